"""Pinned dataset files: verify a local cache, download what is missing, atomically.

An entry may be an archive (zip or tar): its ``members`` are extracted beside it with the
standard library, each through a temporary file renamed when complete.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from seqmodels.core.errors import DatasetError

log = logging.getLogger(__name__)

__all__ = ["DATASETS", "DatasetError", "RemoteFile", "download_file", "ensure_dataset"]

_SLU_COMMIT = "61f0307c729b1fad479ef1de94aa5ac5dee601b0"
_SLU_URL = f"https://raw.githubusercontent.com/MiuLab/SlotGated-SLU/{_SLU_COMMIT}/data"
_CHAR_RNN_COMMIT = "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives under the dataset folder, its URL and checksum.

    ``sha256`` where one is published; otherwise ``md5`` or just ``size`` (bytes), whichever
    the source publishes (docs/corpora.md says where each came from). An archive lists the
    ``members`` to extract as ``(name in the archive, path under the dataset folder)``.
    """

    path: str
    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    members: tuple[tuple[str, str], ...] = ()

    def expected(self) -> str:
        """The published checksum, as messages show it."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.md5:
            return f"md5 {self.md5}"
        return f"size {self.size} bytes (no published checksum)"

    def published(self) -> str:
        """The published value alone (``has sha256 <actual>, expected <this>``)."""
        return self.sha256 or self.md5 or f"{self.size} bytes"


def _slu(name: str, hashes: dict[str, str]) -> list[RemoteFile]:
    return [RemoteFile(p, f"{_SLU_URL}/{name}/{p}", h) for p, h in hashes.items()]


DATASETS: dict[str, list[RemoteFile]] = {
    "atis": _slu(
        "atis",
        {
            "train/seq.in": "3a670980841b21ab39088b2595efc17d487cdc45769c075a3e5f9458bba28c7f",
            "train/seq.out": "14c7131bd66562f797dbd7189bc7358f0cf354c6afb0785a9ab973c35b58f34c",
            "train/label": "d0a771547665eecbdf9f96ea015ef07d1f6ee9f063e861020dafabb3c2a04377",
            "valid/seq.in": "c7435b96e7948393608c34819628e863c5338f11ca68e8f896d2cc041d8e17f8",
            "valid/seq.out": "83ccff3e36f83a993f8e5b5b82adf3256076f234abda4d784051381d7ac76922",
            "valid/label": "06957cfe6fdffac84f8280bc3a1f8ca85c85631b363817aa4543aac611f8addf",
            "test/seq.in": "4b2119fc59c37f9398c6605db435d4f467505009e6ee3e5af04fed09f39dc397",
            "test/seq.out": "a4690d6bceadc06876d1ff99bc401744aa981cb321e598ae12a3859d7be53254",
            "test/label": "ce4bfe6590d9498e1078f30b4137d3e8b3e94277b444b26360c0bf2e9e282761",
        },
    ),
    "snips": _slu(
        "snips",
        {
            "train/seq.in": "04ad1e3f2121d83c6478f9a4b17d2dbdc21d06d6127f73cb7af835ed733f9855",
            "train/seq.out": "fd5f2121d8055827e5d6b3d3bac30f3d7e94e82a5d437751960cbdd9e1b4f6d3",
            "train/label": "bfd7df6cf9dd76c5da5d8b61bc85f90386197bdd3d7510c1d324c051537b962f",
            "valid/seq.in": "64e0f6d8ad8aab3a3828164d7d53731a0993d3ca1aed437ceaca6d3d568d410e",
            "valid/seq.out": "712e6d34feb8d52d208b820a5f8bae6e6ff990f08374507dfde22de389088319",
            "valid/label": "9c1dd041216f647bcfca838aaf1a48eb5781e4404256d31ff07cd38a5436c52f",
            "test/seq.in": "c1e341173fcea2951a8ca371956a6f81c76de87b9583c62eb87edd6158fa3a7c",
            "test/seq.out": "58c07c9097d5e1f78889765c2a535a160f6455b90b3142055c8051847afcca47",
            "test/label": "37a26da3ad079bb41c42c85a3a8f827eb47efec4c5917ce5d08f4b2736e4f830",
        },
    ),
    "tinyshakespeare": [
        RemoteFile(
            "input.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/"
            f"{_CHAR_RNN_COMMIT}/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        )
    ],
    # The char-LM benchmarks; where each checksum is published: docs/corpora.md.
    "enwik8": [
        RemoteFile(
            "enwik8.zip",
            "http://mattmahoney.net/dc/enwik8.zip",
            sha256="547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
            size=36445475,
            members=(("enwik8", "enwik8"),),
        )
    ],
    "text8": [
        RemoteFile(
            "text8.zip",
            "http://mattmahoney.net/dc/text8.zip",
            size=31344016,  # no checksum is published for text8.zip, only its size
            members=(("text8", "text8"),),
        )
    ],
    "ptb_char": [
        RemoteFile(
            "simple-examples.tgz",
            "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
            md5="30177ea32e27c525793142b6bf2c8e2d",  # only an MD5 is published
            members=tuple(
                (f"./simple-examples/data/ptb.char.{split}.txt", f"ptb.char.{split}.txt")
                for split in ("train", "valid", "test")
            ),
        )
    ],
}


def sha256_of(path: Path) -> str:
    return digests_of(path)["sha256"]


def digests_of(path: Path) -> dict[str, str]:
    """The file's sha256 and md5, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def mismatch(remote: RemoteFile, digests: dict[str, str], size: int) -> str | None:
    """What differs from the published checksum (``"sha256 <actual>"``), or None."""
    if remote.sha256 and digests["sha256"] != remote.sha256:
        return f"sha256 {digests['sha256']}"
    if remote.md5 and digests["md5"] != remote.md5:
        return f"md5 {digests['md5']}"
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes"
    return None


DATA_DIR_REMEDY = "point SEQMODELS_DATA_DIR (or paths.data_dir=) at a writable folder"


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_beside(dest: Path, what: str, remedy: str = DATA_DIR_REMEDY) -> tuple[int, Path]:
    """A new temporary file in ``dest``'s folder (made if missing), to be renamed onto ``dest``
    by :func:`publish`; a folder it cannot write in is one error naming ``remedy``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as err:
        raise DatasetError(f"cannot write {what} into {dest.parent} ({err}); {remedy}") from err
    return fd, Path(tmp_name)


def publish(tmp: Path, dest: Path) -> None:
    """``tmp`` renamed onto ``dest`` (atomically), with the mode any new file gets here."""
    # mkstemp makes the file 0600; a cache may be shared, so give it the mode any new file
    # gets here (0666 less the umask), as curl or wget would.
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, dest)


def download_file(
    url: str,
    dest: Path,
    sha256: str | None,
    timeout: float = 30.0,
    md5: str | None = None,
    size: int | None = None,
) -> Path:
    """Download ``url`` to ``dest`` via a temporary file in the same folder.

    The file only appears at ``dest`` once its checksum matches, so the cache never holds
    a partial or wrong file.
    """
    remote = RemoteFile(dest.name, url, sha256, md5, size)
    fd, tmp = temporary_beside(dest, f"the download of {url}")
    try:
        sha, digest_md5, received = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        sha.update(block)
                        digest_md5.update(block)
                        out.write(block)
                        received += len(block)
                    if response.length:  # bytes the server announced but never sent
                        raise OSError(
                            f"connection closed after {received} bytes, "
                            f"{response.length} more expected"
                        )
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                raise DatasetError(
                    f"could not download {url} ({err}); expected {remote.expected()}. "
                    f"Without network, put the file at {dest} or point SEQMODELS_DATA_DIR "
                    "(or paths.data_dir=) at a folder that holds it."
                ) from err
        digests = {"sha256": sha.hexdigest(), "md5": digest_md5.hexdigest()}
        if (wrong := mismatch(remote, digests, received)) is not None:
            raise DatasetError(
                f"download of {url} has {wrong}, expected {remote.published()}; "
                f"nothing was written to {dest}"
            )
        if not sha256 and not md5:
            log.warning("%s has no published checksum; only its size was checked", url)
        publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract_member(archive: Path, member: str, dest: Path) -> None:
    """Copy ``member`` of a zip or tar ``archive`` to ``dest`` (streamed, then renamed)."""
    fd, tmp = temporary_beside(dest, f"{member} of {archive.name}")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                if archive.suffix == ".zip":
                    with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                else:
                    with tarfile.open(archive) as tf:
                        src = tf.extractfile(member)
                        if src is None:
                            raise KeyError(member)
                        shutil.copyfileobj(src, out, 1 << 20)
            except (KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
                raise DatasetError(
                    f"cannot extract {member} from {archive} ({type(err).__name__}: "
                    f"{' '.join(str(err).split())}); "
                    "delete the archive to download it again"
                ) from err
        publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_dataset(name: str, data_dir: str | Path, download: bool = True) -> Path:
    """Return ``data_dir/name`` holding every pinned file of ``name``, downloading what is missing.

    Files already present are checked against their checksum and used without network; an
    archive's members are extracted once (they are not checked again at every start).
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    root = Path(data_dir).expanduser() / name
    for remote in DATASETS[name]:
        local = root / remote.path
        members = [(m, root / out) for m, out in remote.members]
        if members and all(out.is_file() for _, out in members):
            continue
        if local.is_file():
            wrong = mismatch(remote, digests_of(local), local.stat().st_size)
            if wrong is not None:
                raise DatasetError(
                    f"{local} has {wrong}, expected {remote.published()} ({remote.url}); "
                    "delete it to download it again"
                )
        elif not download:
            raise DatasetError(
                f"{local} is missing; download it from {remote.url} "
                f"({remote.expected()}) or set data.download=true"
            )
        else:
            download_file(remote.url, local, remote.sha256, md5=remote.md5, size=remote.size)
        for member, out in members:
            if not out.is_file():
                extract_member(local, member, out)
    return root
