"""Writing a file all at once: a temporary file beside it, renamed into place.

Readers never see a partial file, and a write that is interrupted leaves no ``*.tmp`` behind: an
exception (Ctrl+C, SIGTERM through the CLI) removes it at once, and the temporary files of a
process that was killed outright (``kill -9``, a power cut) are removed by the next write of the
same file. Each temporary name carries its writer's process id, so a write still running in
another process is never touched.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# temporary files without a process id (older lafin versions) count as stale after this long
_UNTAGGED_STALE_SECONDS = 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temporary files left by interrupted writes of ``path``; returns what was removed."""
    removed = []
    prefix = f".{path.name}."
    for name in glob.glob(glob.escape(str(path.parent / prefix)) + "*.tmp"):
        tmp = Path(name)
        tag = tmp.name[len(prefix) :].split(".", 1)[0]
        try:
            stale = (
                not _alive(int(tag))
                if tag.isdigit() and int(tag) != os.getpid()
                else not tag.isdigit() and time.time() - tmp.stat().st_mtime > _UNTAGGED_STALE_SECONDS
            )
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (fsynced, with the
    umask's permissions). The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is not
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
