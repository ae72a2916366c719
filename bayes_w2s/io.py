"""Crash- and race-safe file writes for caches and results.

Every cache or result file is written to a temporary name that is unique to the writing
process (a fresh random name in the target's folder, so the rename stays on one file
system) and then moved over the target with ``os.replace``, which is atomic: a reader sees
the old file or the new one, never half of one, and two processes writing the same path
never share a temporary file.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


class UnreadableCacheWarning(UserWarning):
    """A cache file could not be read and is being recomputed."""


def warn_unreadable(path: str | os.PathLike, reason) -> None:
    """Say that the cache file ``path`` is unreadable (and why) and will be recomputed.

    Caches are derived data: losing one costs time, never results, so this is a warning
    and not an error; the recomputed file replaces the bad one.
    """
    warnings.warn(f"cache file {path} is unreadable ({reason}); recomputing it", UnreadableCacheWarning,
                  stacklevel=3)


def _temp_in(path: Path, directory: bool = False) -> Path:
    # the folder may have been deleted since the cache was opened (a user clearing it mid-run)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{path.name}.", f".tmp{''.join(path.suffixes)}"   # keep the suffix: savefig/np.save read it
    # not mkstemp / mkdtemp: they make private (0600 / 0700) files, and results written
    # through them could not be read by the user's group; os.open / os.mkdir with the
    # default modes let the umask (and default ACLs) decide, as for any other file
    for _ in range(100):
        name = path.parent / f"{prefix}{secrets.token_hex(6)}{'.tmp' if directory else suffix}"
        try:
            if directory:
                os.mkdir(name, 0o777)
            else:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return name
        except FileExistsError:   # a name another process just took
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; on success move it over ``path``.

    The temporary name ends with ``path``'s suffixes, so writers that infer the format
    from the name (``np.save``, ``savefig``) work unchanged. On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _temp_in(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``path``; on success it replaces ``path``.

    A folder cannot be swapped in one step, so an existing ``path`` is first renamed
    aside (a reader that opens it meanwhile sees it missing, not half-written) and deleted
    after the new one is in place. If another process puts its folder there in between,
    that one is kept: cache folders are keyed by content, so both hold the same thing.
    A folder that is built once and then only read (offline weights) is built under
    :func:`locked`, so that no process swaps it while another reads it.
    """
    path = Path(path)
    tmp = _temp_in(path, directory=True)
    aside = None
    try:
        yield tmp
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            try:
                os.replace(path, aside)
            except FileNotFoundError:   # removed by someone else meanwhile
                pass
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
            log.info("%s was written by another process meanwhile; keeping that one", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock named after ``path`` (the file ``.<name>.lock`` beside it) across
    processes: "is it built? if not, build it" under the lock is done by one process while the
    others wait, then find it built. ``fcntl.flock``: released when the process dies. Without
    ``fcntl`` (Windows) there is no lock: each build is still atomic, only not exclusive."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
