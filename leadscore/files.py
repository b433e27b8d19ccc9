"""Writing files so that a crash or a full disk never leaves half a file behind.

Every file leadscore writes (feature tables, scores, reports, exports) is
written to a temporary file in the destination's folder, flushed to disk,
then renamed over the destination: a reader sees the old file or the new
one, never a mix, and a failed write leaves the old file as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError

TABLE_SUFFIXES = (".csv", ".parquet")


def check_folder(path: Path, option: str = "--out") -> None:
    """Refuse a destination whose folder is missing or which is a folder itself, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise LeadscoreError(f"{option} {path}: that is a folder. Name a file inside it, e.g. {path / 'out'}{path.suffix}.")
    if not path.parent.is_dir():
        raise LeadscoreError(f"{option} {path}: the folder {path.parent} does not exist. Create it first.")
    if not os.access(path.parent, os.W_OK):
        raise LeadscoreError(f"{option} {path}: the folder {path.parent} is not writable. Write somewhere else.")


def _failure(path: Path, existed: bool, error: OSError) -> LeadscoreError:
    kept = "the existing file is unchanged" if existed else "no file was written"
    if error.errno == errno.ENOSPC:
        cause = "the disk is full"
        fix = "Free some space, or write to another disk."
    elif error.errno == errno.EDQUOT:
        cause = "the disk quota is exhausted"
        fix = "Free some space, or write to another disk."
    elif error.errno == errno.EFBIG:
        cause = "the file would exceed the largest size allowed here"
        fix = "Write to another disk, or raise the file-size limit (ulimit -f)."
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = "permission denied"
        fix = "Check the folder's permissions, or write somewhere else."
    else:
        cause = error.strerror or str(error)
        fix = "Check the destination and try again."
    return LeadscoreError(f"Could not write {path}: {cause}; {kept}. {fix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; on success it replaces ``path`` in one rename.

    On any failure the temporary file is removed and ``path`` keeps its old
    content; disk and permission errors become one ``LeadscoreError`` saying so.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    check_folder(path, "Output")
    existed = path.exists()
    try:
        descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise _failure(path, existed, error) from error
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        _sync(temporary)
        _copy_permissions(path, temporary, existed)
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _failure(path, existed, error) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    # The rename itself must reach the disk, or a crash can bring back the old name.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _copy_permissions(path: Path, temporary: Path, existed: bool) -> None:
    # mkstemp creates 0600 files; the result should look like any other file the user writes.
    if existed:
        os.chmod(temporary, path.stat().st_mode & 0o7777)
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def check_table_suffix(path: Path, option: str = "--out") -> None:
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise LeadscoreError(
            f"{option} {path}: leadscore writes .csv or .parquet files; name the file with one of these extensions."
        )


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """``frame`` as CSV or Parquet, chosen by ``path``'s extension, written atomically."""
    path = Path(path)
    check_table_suffix(path)
    with atomic_path(path) as temporary:
        if path.suffix.lower() == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
    return path
