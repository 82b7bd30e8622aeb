"""Pinned dataset files: verify a local cache, download what is missing, atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from seqmodels.errors import DatasetError

__all__ = ["DATASETS", "DatasetError", "RemoteFile", "download_file", "ensure_dataset"]

_SLU_COMMIT = "61f0307c729b1fad479ef1de94aa5ac5dee601b0"
_SLU_URL = f"https://raw.githubusercontent.com/MiuLab/SlotGated-SLU/{_SLU_COMMIT}/data"
_CHAR_RNN_COMMIT = "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives under the dataset folder, its URL and sha256."""

    path: str
    url: str
    sha256: str


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
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def download_file(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` via a temporary file in the same folder.

    The file only appears at ``dest`` once its sha256 matches, so the cache never holds
    a partial or wrong file.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as err:
        raise DatasetError(
            f"cannot write the download of {url} into {dest.parent} ({err}); point "
            "SEQMODELS_DATA_DIR (or paths.data_dir=) at a writable folder"
        ) from err
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    received = 0
                    for block in iter(lambda: response.read(1 << 16), b""):
                        digest.update(block)
                        out.write(block)
                        received += len(block)
                    if response.length:  # bytes the server announced but never sent
                        raise OSError(
                            f"connection closed after {received} bytes, "
                            f"{response.length} more expected"
                        )
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                raise DatasetError(
                    f"could not download {url} ({err}); expected sha256 {sha256}. "
                    f"Without network, put the file at {dest} or point SEQMODELS_DATA_DIR "
                    "(or paths.data_dir=) at a folder that holds it."
                ) from err
        if digest.hexdigest() != sha256:
            raise DatasetError(
                f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}; "
                f"nothing was written to {dest}"
            )
        # mkstemp makes the file 0600; a cache may be shared, so give it the mode any new file
        # gets here (0666 less the umask), as curl or wget would.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure_dataset(name: str, data_dir: str | Path, download: bool = True) -> Path:
    """Return ``data_dir/name`` holding every pinned file of ``name``, downloading what is missing.

    Files already present are checked against their sha256 and used without network.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    root = Path(data_dir).expanduser() / name
    for remote in DATASETS[name]:
        local = root / remote.path
        if local.is_file():
            actual = sha256_of(local)
            if actual != remote.sha256:
                raise DatasetError(
                    f"{local} has sha256 {actual}, expected {remote.sha256} ({remote.url}); "
                    "delete it to download it again"
                )
            continue
        if not download:
            raise DatasetError(
                f"{local} is missing; download it from {remote.url} "
                f"(sha256 {remote.sha256}) or set data.download=true"
            )
        download_file(remote.url, local, remote.sha256)
    return root
