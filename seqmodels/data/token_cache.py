"""Where token files are cached, and what names a text's content there.

A token file's name holds the size and content hash of its text's :func:`fingerprint`, so a
changed text is encoded into a new file (and the old one removed, :func:`prune_older`) while a
touched one keeps its file; files appear only complete (:func:`write_atomically`), with the
umask's mode.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from seqmodels.core.errors import DatasetError
from seqmodels.data.download import publish, temporary_beside

log = logging.getLogger(__name__)
HASH_BLOCK = 1 << 20  # bytes read per step when hashing a text whole
HASH_WHOLE = 1 << 26  # texts up to 64 MiB are hashed whole ...
SAMPLE = 1 << 20  # ... larger ones by SAMPLES blocks of 1 MiB: first, last, evenly between
SAMPLES = 16


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies the text's content: size, modification time and a hash of its bytes.

    Texts up to ``HASH_WHOLE`` (64 MiB) are hashed whole (BLAKE2, ~1 GB/s: 0.06 s at most).
    A larger one is hashed by ``SAMPLES`` blocks of 1 MiB (its first, its last and evenly
    spaced ones): 16 MiB read whatever its size, where a full hash of a 5 GB corpus costs a pass
    over it at every start. The trade-off: an edit of a large text that keeps its size and its
    modification time and touches none of the sampled blocks goes unseen (delete its token
    files to have it encoded again; token files are named by size and hash only).
    """
    stat = path.stat()
    size = stat.st_size
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size <= HASH_WHOLE:
            while block := f.read(HASH_BLOCK):
                digest.update(block)
        else:
            for i in range(SAMPLES):  # the first block at 0, the last ending at the end
                f.seek(i * (size - SAMPLE) // (SAMPLES - 1))
                digest.update(f.read(SAMPLE))
    return {"size": size, "mtime_ns": stat.st_mtime_ns, "blake2b": digest.hexdigest()}


def default_cache_dir() -> Path:
    """The user's cache for token files: ``$XDG_CACHE_HOME/seqmodels/tokens`` (else
    ``~/.cache/seqmodels/tokens``); where that cannot be written, a folder of this user's in
    the temporary directory, said in one log line."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    folder = Path(base if os.path.isabs(base) else "~/.cache").expanduser()
    folder = folder / "seqmodels" / "tokens"
    if _writable(folder):
        return folder
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    private_folder(Path(tempfile.gettempdir()) / f"seqmodels-{uid}")
    fallback = Path(tempfile.gettempdir()) / f"seqmodels-{uid}" / "tokens"
    if fallback not in _FELL_BACK:
        _FELL_BACK.add(fallback)
        log.warning(
            "cannot write token files into %s; using %s (data.cache_dir= sets the folder)",
            folder,
            fallback,
        )
    return fallback


_FELL_BACK: set[Path] = set()


def private_folder(folder: Path) -> None:
    """Make ``folder`` (mode 0o700), or refuse it in one line unless it is a folder of this
    user's that nobody else can write: its name is predictable and the temporary directory
    is everyone's, so another user could have made it first (or a link by its name)."""
    hint = "set data.cache_dir=<a folder of yours> for the token files"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as err:
        raise DatasetError(f"cannot make {folder} ({err.strerror}): {hint}") from None
    if not hasattr(os, "getuid"):  # Windows: per-user temporary folders
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise DatasetError(
            f"{folder} is not a private folder of this user's (another owner, a link, or "
            f"writable by others: mode {stat.S_IMODE(info.st_mode):o}): {hint}"
        )


def prune_older(current: Path, prefix: str) -> None:
    """Remove the token files (and their ``.json``) named ``<prefix>*`` in ``current``'s
    folder but ``current``'s: the older contents of the same text and vocabulary. A run still
    reading one keeps its open memory map (on Linux an unlinked file lives while it is open);
    only a process opening it anew by name (a DataLoader worker started later) misses it."""
    keep = {current.name, current.name + ".json"}
    for old in current.parent.glob(glob.escape(prefix) + "*"):
        if old.name not in keep and not old.name.endswith(".part"):
            try:
                old.unlink()
            except OSError:
                pass  # another process removed it, or may not: it is only disk space


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_atomically(dest: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``dest``; rename it only when complete
    (with the umask's mode, as the downloads get)."""
    fd, tmp = temporary_beside(dest, "token files", "set data.cache_dir= to a writable folder")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
