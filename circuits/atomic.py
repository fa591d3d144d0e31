"""Atomic output directories: a lock on the target, a hidden temporary sibling, a rename.

Writing ``runs/NAME`` goes through `atomic_directory`:

* an exclusive lock ``runs/.NAME.lock`` (``fcntl.flock``, held while writing; released by the
  kernel when the process dies, even by SIGKILL), so a second writer is refused at once;
* stale temporary directories in ``runs/`` whose owning process is dead (killed by SIGKILL or
  a power cut) are removed: each ``runs/.NAME.tmp-XXXXXXXX`` holds an ``.owner`` file with its
  writer's host and pid until it is renamed into place;
* everything is written into ``runs/.NAME.tmp-XXXXXXXX``, which is renamed to ``runs/NAME`` at
  the end; on any exception, Ctrl-C (SIGINT) or SIGTERM it is removed.

Only the standard library is used: importing this module is instant.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from circuits.errors import CheckpointError

CONFIG = "config.json"  # what makes a directory a checkpoint (circuits.checkpoint.CONFIG)
OWNER = ".owner"  # inside a temporary directory: "host pid" of the process writing it
TMP_TAG = "tmp"


class Terminated(SystemExit):
    """Raised in the main thread by a SIGTERM received while an output is being written, so the
    temporary directory is removed on the way out; exits with 128 + 15 like a killed process."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def check_target(target: Path, force: bool) -> None:
    """Raise unless a checkpoint may be put at `target` (absent, empty, or a checkpoint and `force`)."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory; choose another directory",
                              cli=f"{target} exists and is not a directory; choose another --out")
    if not any(target.iterdir()):
        return
    if not force:
        raise CheckpointError(
            f"{target} exists and is not empty; pass force=True to overwrite it or choose another directory",
            cli=f"{target} exists and is not empty; pass --force to overwrite it or choose another --out",
        )
    if not (target / CONFIG).is_file():
        # force deletes the old directory: never do that to something that is not a checkpoint
        raise CheckpointError(f"{target} is not empty and is not a checkpoint (no {CONFIG}); refusing to overwrite it")


def sibling(target: Path, tag: str) -> Path:
    """A fresh hidden name next to `target`, e.g. ``.run.tmp-1a2b3c4d``."""
    return target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_directory(target: Path, *, force: bool, check=check_target) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces absolute path `target` when the block succeeds.

    The target is locked and checked on entry (fail fast: before any work) and checked again
    before the swap. With ``force`` an existing checkpoint is renamed aside, the new one renamed
    in, and only then the old one deleted, so a crash at any point leaves a complete checkpoint
    at or next to the target. On any error, Ctrl-C or SIGTERM the temporary directory is removed
    and the target is left untouched.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create a checkpoint in {target.parent}: {e.strerror or e}") from None
    with exclusive(target):
        check(target, force)
        clean_stale(target.parent)
        tmp = sibling(target, TMP_TAG)
        try:
            tmp.mkdir()  # a plain mkdir (not mkdtemp) so the checkpoint gets the usual permissions
            (tmp / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(f"cannot create a checkpoint in {target.parent}: {e.strerror or e}") from None
        try:
            with _terminate_as_exception():
                yield tmp
                check(target, force)
                (tmp / OWNER).unlink()
                if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
                    target.rmdir()
                if target.exists() or target.is_symlink():
                    _swap(tmp, target)
                else:
                    tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap(new: Path, target: Path) -> None:
    """Replace `target` by `new`: old aside, new in (or old back if that fails), then old deleted."""
    old = sibling(target, "old")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)  # the new checkpoint is in place: a leftover is no failure


# ------------------------------------------------------------------------------ the lock
@contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold the lock ``.NAME.lock`` next to `target`; `CheckpointError` at once if another
    process holds it. The lock file is removed on release."""
    import fcntl

    lock = target.with_name(f".{target.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CheckpointError(f"cannot create the lock file {lock}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd).strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise CheckpointError(f"cannot lock {lock}: {e.strerror or e}") from None
            raise CheckpointError(
                f"{target} is being written by another process ({holder}); wait for it or choose another directory",
                cli=f"{target} is being written by another process ({holder}); wait for it or choose another --out",
            ) from None
        try:  # the file we locked may have been removed by its previous holder meanwhile
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        try:
            os.unlink(lock)  # while still holding it: a waiting process then re-opens a fresh file
        except OSError:
            pass
        os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------------------ stale leftovers
def clean_stale(parent: Path) -> list[Path]:
    """Remove the temporary directories ``.NAME.tmp-*`` in `parent` whose writer (``.owner``:
    host and pid) is a dead process on this host; return what was removed. Directories without an
    owner file, of another host or of a live process are left alone."""
    removed = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(".") and f".{TMP_TAG}-" in p.name]
    except OSError:
        return removed
    host = socket.gethostname()
    for path in candidates:
        try:
            owner_host, pid = (path / OWNER).read_text().split()
            pid_number = int(pid)
        except (OSError, ValueError):
            continue
        if owner_host == host and pid_number != os.getpid() and not process_alive(pid_number):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# ------------------------------------------------------------------------------ SIGTERM
@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` in the main thread (so ``except`` and
    ``finally`` clauses clean up); the previous handler is restored afterwards. SIGINT already
    raises KeyboardInterrupt. Outside the main thread, or when SIGTERM is ignored, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
