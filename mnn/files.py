"""Atomic writes: a file is replaced by a whole new version or not at all.

Every file mnn writes (checkpoints, plots, downloads) goes through ``atomic_file``:

1. the bytes go to a temporary file in the target's directory, named
   ``.<name>.<pid>.<random>.tmp`` (``O_EXCL``: never a file someone else made);
2. it is flushed and ``fsync``-ed, so the bytes are on disk;
3. ``os.replace`` renames it over the target in one step, and the directory is
   fsynced so that the rename itself survives a crash.

A reader sees the whole old file or the whole new one, never a mix. An error or
an interrupt inside the ``with`` block removes the temporary file and leaves the
target as it was. A process killed outright (SIGKILL, power loss) cannot clean
up after itself, so each write first removes the temporary files of the same
target whose process no longer exists.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

_CHUNK = 1 << 20  # bytes per write call


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents into; committed when the block ends."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    remove_stale_temporaries(path)
    # os.urandom(6).hex() is secrets.token_hex(6), without importing secrets (and random).
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    # O_EXCL: never write into a file someone else made; 0o666 minus the umask, as open() does.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, atomically (see ``atomic_file``)."""
    with atomic_file(path) as file:
        write_all(file, data)


def write_all(file: BinaryIO, data: bytes) -> None:
    """Write ``data`` in chunks of 1 MiB (a huge single write call can fail on some systems)."""
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        file.write(view[start:start + _CHUNK])


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files of ``path`` left by processes that no longer run.

    Returns the names removed. A temporary file of a running process (another
    save in progress) is left alone. On Windows, where process ids cannot be
    probed this way, nothing is removed.
    """
    directory, name = os.path.split(os.path.abspath(path))
    if os.name == "nt":
        return []
    pattern = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(directory or "."):
            match = pattern.match(entry)
            if match and not _process_exists(int(match.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, entry))
                    removed.append(entry)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to someone else
        return True
    return True


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible, nor needed, on Windows."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
