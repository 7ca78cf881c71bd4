"""One writer per store *file*, whatever path names it.

A store can be reached through several paths: ``b/S.h5``, a symlink ``b/L.h5 -> S.h5``, a hard link. Two
locks make every path to one file meet:

- a lock file beside the store's *real* path (symlinks resolved), held for the writer's whole life: it
  covers the moments before the store file exists (creation) and between files (growth), and every
  symlinked name resolves to it;
- a lock on the store file itself (its inode), taken as soon as the file exists and moved to the new file
  before a grown store replaces the old one: every hard link to the file meets there.

Both are advisory locks released by the kernel when the process dies (a SIGKILLed writer leaves nothing to
clean up). The lock on the file is an open-file-description lock (Linux ``F_OFD_SETLK``): it neither
conflicts with HDF5's own ``flock`` (so other programs may still open the store read-only with h5py's
default locking) nor disappears when h5py closes its own descriptor of the same file, as a POSIX record
lock would.
"""
from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

from features.errors import StoreError

_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)


def real_path(path: str | Path) -> Path:
    """The store's real location: symlinks resolved, so a grown store replaces the file, not the link."""
    return Path(os.path.realpath(path))


def _lock_file(fd: int) -> bool:
    """Exclusive lock on the whole file behind ``fd``; False when another process holds it."""
    if _OFD_SETLK is None:          # not Linux: flock (per open file description as well)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    # struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;} (l_pid 0 for OFD)
    request = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, _OFD_SETLK, request)
        return True
    except OSError as exc:
        if exc.errno in (11, 13):   # EAGAIN / EACCES: held by another open file description
            return False
        raise


class WriterLock:
    """``with WriterLock(store) as lock: ...``: this process is the store's only writer until it exits."""

    def __init__(self, store: str | Path):
        self.store = real_path(store)
        self.named = Path(store)
        self.path = self.store.with_name(self.store.name + ".lock")
        self._fd: int | None = None          # the lock file beside the real path
        self._file_fd: int | None = None     # the store file itself

    def acquire(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            via = "" if self.named == self.store else f" (the file {self.named} names)"
            raise StoreError(f"another process (pid {holder}) is writing {self.store}{via}; wait for it to "
                             "finish or stop it (readers may open the store meanwhile)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        if self.store.exists():
            try:
                self.hold(self.store)
            except BaseException:
                self.release()
                raise
        return self

    def hold(self, file: Path) -> None:
        """Lock ``file`` (the store, or the grown file about to replace it), then let go of the one held."""
        fd = os.open(file, os.O_RDWR)      # a write lock needs a descriptor open for writing
        if not _lock_file(fd):
            os.close(fd)
            raise StoreError(f"another process is writing {self.store} through another name for the same file "
                             "(a hard link); wait for it to finish or stop it")
        if self._file_fd is not None:
            os.close(self._file_fd)
        self._file_fd = fd

    def release(self) -> None:
        for name in ("_file_fd", "_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)          # closing the descriptor releases its lock
                setattr(self, name, None)

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
