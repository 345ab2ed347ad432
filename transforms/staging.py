"""Atomic output directories: artifacts are written into a staging directory
beside the destination and moved into place in one rename, so a reader never
sees a half-written artifact, and a failed run leaves nothing behind.

Without overwrite, the move never deletes or replaces anything: a directory
that appeared at the destination after the run was set up makes the commit
fail with `OutputExistsError`, and the finished results stay in the staging
directory (`commit_directory`). With overwrite, the new directory and the old
one swap places in one step, so the destination is never missing.

One run at a time writes a destination: `StagedOutput` takes an advisory lock
(`OutputLock`, ``.NAME.lock`` beside it) before anything else and holds it
until the commit or the failure; the kernel drops it when the process ends,
even on SIGKILL. Under the lock it removes what failed or killed runs of the
same destination left behind (`clean_leftovers`)."""

from __future__ import annotations

import ctypes
import datetime
import errno
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import uuid
from typing import List, Optional

try:
    import fcntl
except ImportError:  # not POSIX: no lock (see OutputLock)
    fcntl = None

from featurebridge.transforms.errors import OutputExistsError, UsageError
from featurebridge.transforms.layout import MANIFEST

__all__ = [
    "OutputExistsError",
    "OutputLock",
    "OutputLockedError",
    "StagedOutput",
    "clean_leftovers",
    "commit_directory",
]

_LOG = logging.getLogger(__name__)

# renameat2(2) (Linux >= 3.15, glibc >= 2.28): the destination is never
# replaced (NOREPLACE), or two paths swap places in one step (EXCHANGE).
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# errno values meaning "renameat2 or this flag is not available here".
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP)
# errno values meaning "something is at the destination" for each way of moving.
_EXISTS = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)
# The staging directory's name is `.NAME.staging-` + 12 hex digits; with this
# suffix it holds a tree that is being swapped or deleted during an overwrite.
_OLD = ".old"
# flock errno values meaning "this filesystem cannot lock" (then we run unlocked).
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _names_descriptor(path: str, fd: int) -> bool:
    """Whether `path` (not following a link) is the file open as `fd`."""
    try:
        on_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_path.st_dev, on_path.st_ino) == (mine.st_dev, mine.st_ino)


class OutputLockedError(OutputExistsError):
    """Another featurebridge run is writing the same output directory now."""


def _renameat2():
    """libc's renameat2, or None where it is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _rename_noreplace(src: str, dst: str) -> None:
    """Renames `src` to `dst` only if nothing is at `dst` (a dangling link counts).

    Uses renameat2(RENAME_NOREPLACE), one atomic step. Where that is not
    available (another OS, an old kernel, a filesystem without the flag), it
    creates `dst` as an empty directory first (``os.mkdir`` fails if anything
    is there) and renames `src` onto that empty directory. The fallback's only
    race: someone who removes that new empty directory and puts their own
    empty one there in the instant before the rename loses that empty
    directory; a directory with content is never replaced (the rename fails).

    Raises:
      OSError: with an errno in `_EXISTS` when something is at `dst`; others as the OS says.
    """
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:
            raise OSError(err, os.strerror(err), src, None, dst)
    os.mkdir(dst)
    try:
        os.rename(src, dst)
    except OSError:
        try:
            os.rmdir(dst)  # our empty placeholder; left alone if anything was put in it
        except OSError:
            pass
        raise


def _remove(path: str) -> None:
    """Deletes a directory tree, or a file or link (never what a link points to); errors ignored."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _replace(staging: str, final_dir: str) -> None:
    """Puts `staging` at `final_dir` and deletes what was there (overwrite).

    With renameat2(RENAME_EXCHANGE) the two swap places in one step, so
    `final_dir` always holds a complete output, old or new. The staging
    directory is renamed to ``STAGING.old`` first: a run killed after that
    leaves a tree under a name the next start always deletes (the new results
    before the swap, the old output after it), never one it would keep as
    finished results. Without the exchange (another OS, an old kernel or
    filesystem): `final_dir` moves to ``STAGING.old``, then `staging` to
    `final_dir`; a kill between the two leaves no `final_dir`, and the next
    start of a run on `final_dir` puts ``STAGING.old`` back (`clean_leftovers`).
    """
    old = staging + _OLD
    fn = _renameat2()
    if fn is not None:
        os.rename(staging, old)
        if fn(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(final_dir), _RENAME_EXCHANGE) == 0:
            _remove(old)  # the previous output, swapped out
            return
        err = ctypes.get_errno()
        os.rename(old, staging)
        if err not in _UNSUPPORTED:
            raise OSError(err, os.strerror(err), final_dir, None, staging)
    os.rename(final_dir, old)
    try:
        os.rename(staging, final_dir)
    except OSError:
        try:
            os.rename(old, final_dir)  # put the previous output back
        except OSError:
            pass
        raise
    _remove(old)


def appeared_after_start(final_dir: str, staging: str) -> OutputExistsError:
    """The error for a destination that appeared after the run was set up."""
    return OutputExistsError(
        f"Output directory {final_dir!r} appeared after this job started (it did not exist when "
        "the job was set up), so the results were not moved there and nothing there was deleted "
        f"or replaced. The finished results are kept at {staging!r}: move them where you want "
        "them, or rerun with a new output directory."
    )


def commit_directory(staging: str, final_dir: str, overwrite: bool) -> str:
    """Moves a finished staging directory to `final_dir`; returns `final_dir`.

    Args:
      staging: the finished directory (in the same parent as `final_dir`).
      final_dir: the destination.
      overwrite: True: an existing `final_dir` is replaced: the two swap
        places in one step, then the old one is deleted (see `_replace`).
        False: nothing at `final_dir` is ever deleted or replaced.

    Raises:
      OutputExistsError: `overwrite` is False and something is at `final_dir`
        (it appeared after the run was set up); `staging` is left as it is,
        and the message names both paths.
    """
    try:
        _rename_noreplace(staging, final_dir)
    except OSError as e:
        if e.errno not in _EXISTS:
            raise
        if not overwrite:
            raise appeared_after_start(final_dir, staging) from None
        _replace(staging, final_dir)
    return final_dir


def _leftover_pattern(name: str) -> "re.Pattern[str]":
    return re.compile(r"\." + re.escape(name) + r"\.staging-[0-9a-f]{12}(" + re.escape(_OLD) + r")?\Z")


def clean_leftovers(final_dir: str) -> List[str]:
    """Removes what earlier runs of `final_dir` left beside it; returns what it kept.

    Call it only while holding `final_dir`'s `OutputLock` (no other run of
    it is then in progress). It looks at entries of the parent directory named
    exactly ``.NAME.staging-`` + 12 hex digits, with or without ``.old``:

    - a staging directory with a sealed manifest holds finished results
      whose move into place was refused or interrupted: kept, with a warning
      naming it (the refusal's error named it too);
    - ``.old`` while `final_dir` is missing: the previous output of an
      overwrite interrupted between its two renames; put back at `final_dir`
      (when there are several, all are kept, with a warning);
    - everything else (unfinished staging directories of failed or killed
      runs, old trees of interrupted overwrites): deleted, in one log line.

    Nothing happens when the parent has no such entries (or does not exist).
    """
    parent, name = os.path.split(final_dir)
    try:
        entries = os.listdir(parent)
    except FileNotFoundError:
        return []
    pattern = _leftover_pattern(name)
    found = sorted(os.path.join(parent, e) for e in entries if pattern.match(e))
    olds = [p for p in found if p.endswith(_OLD)]
    kept = []
    if olds and not os.path.lexists(final_dir):
        if len(olds) == 1:
            try:
                _rename_noreplace(olds[0], final_dir)
                _LOG.warning(
                    "Put back %s at %s: an earlier --overwrite run was interrupted after moving "
                    "the previous output aside.", olds[0], final_dir,
                )
            except OSError:
                kept.append(olds[0])
        else:
            kept += olds
            _LOG.warning(
                "%s is missing, and %d earlier outputs of it were left by interrupted --overwrite runs: "
                "%s. They are kept: move the one you want to %s and delete the others.",
                final_dir, len(olds), ", ".join(olds), final_dir,
            )
        found = [p for p in found if p not in olds]
    removed = []
    for path in found:
        finished = (
            not path.endswith(_OLD)
            and os.path.isdir(path)
            and not os.path.islink(path)
            and os.path.isfile(os.path.join(path, MANIFEST))
        )
        if finished:
            kept.append(path)
            _LOG.warning(
                "Kept %s: finished results of an earlier run of %s that were not moved into place "
                "(refused or interrupted). Move them where you want them, or delete them.", path, final_dir,
            )
            continue
        _remove(path)
        removed.append(path)
    if removed:
        _LOG.info(
            "Removed %d leftover staging director%s of earlier failed or interrupted runs of %s: %s",
            len(removed), "y" if len(removed) == 1 else "ies", final_dir, ", ".join(removed),
        )
    return kept


class OutputLock:
    """An advisory lock on one output directory, held by this process.

    The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``.NAME.lock`` in the
    output's parent directory. The kernel releases it when the process ends
    however it ends (even SIGKILL), so a crashed run never blocks the next
    one. The file holds the holder's pid, host and start time, for the
    message others get. `release` deletes it while still holding the lock;
    a run that opened the file just before that sees that the path no
    longer names the file it locked, and tries again.

    Where the filesystem cannot lock (flock fails with ENOLCK and the like)
    or the OS has no `fcntl`, it logs a warning and runs unlocked.

    Args:
      final_dir: the output directory (absolute or relative); its parent
        must exist.

    Raises:
      OutputLockedError: another process holds the lock; the message names
        the output and the holder's pid, host and start time.
      OSError: the lock file cannot be created (a read-only parent directory).
    """

    def __init__(self, final_dir: str):
        self.final_dir = os.path.abspath(final_dir)
        parent, name = os.path.split(self.final_dir)
        self.path = os.path.join(parent, f".{name}.lock")
        self._fd: Optional[int] = None
        if fcntl is None:
            _LOG.warning("No file locks on this OS: two runs writing %s at once are not detected.", self.final_dir)
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputLockedError(
                    f"Another featurebridge run ({holder}) is writing {self.final_dir!r}. "
                    "Wait for it to finish, or choose another --output."
                ) from None
            except OSError as e:
                os.close(fd)
                if e.errno not in _NO_LOCKS:
                    raise
                _LOG.warning(
                    "Cannot lock %s (%s): two runs writing %s at once are not detected.",
                    self.path, e.strerror, self.final_dir,
                )
                return
            if _names_descriptor(self.path, fd):
                break
            os.close(fd)  # the holder deleted (or someone replaced) the file we locked: again
        self._fd = fd
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode() + b"\n", 0)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def release(self) -> None:
        """Deletes the lock file and releases the lock; does nothing the second time."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _names_descriptor(self.path, fd):
                os.unlink(self.path)  # while still holding the lock
            fcntl.flock(fd, fcntl.LOCK_UN)  # also for a forked child sharing the descriptor
        finally:
            os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """'pid 1234 on HOST, started TIME' from a held lock file.

    The holder writes it just after locking; an empty file is read again
    for up to about half a second before saying the details are unknown.
    """
    for _ in range(10):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "its pid is not known yet"


class StagedOutput:
    """A staging directory that becomes `final_dir` on `commit()`.

    Set up on the launcher, before any pipeline starts, in this order: the
    lock on `final_dir` (`OutputLock`: one run at a time per output, with or
    without overwrite), the removal of leftovers of earlier runs
    (`clean_leftovers`), the check for an existing `final_dir`, the new
    staging directory. The lock is held until `commit()` succeeds, or
    `abort()` or `release()` is called (or the process ends).

    Args:
      final_dir: the destination directory (local filesystem).
      overwrite: replace an existing `final_dir` on commit. Without it the
        commit never deletes or replaces anything (see `commit_directory`).

    Raises:
      OutputLockedError: another run is writing `final_dir` now.
      OutputExistsError: `final_dir` exists and `overwrite` is False.
      UsageError: `final_dir` is a remote URL (only local paths are atomic).
    """

    def __init__(self, final_dir: str, overwrite: bool = False):
        if "://" in final_dir:
            raise UsageError(
                f"Output {final_dir!r} is a remote URL; featurebridge writes outputs "
                "atomically only on a local or mounted filesystem. Write locally and copy."
            )
        self.final_dir = os.path.abspath(final_dir)
        self._overwrite = overwrite
        parent = os.path.dirname(self.final_dir)
        os.makedirs(parent, exist_ok=True)
        self._lock: Optional[OutputLock] = OutputLock(self.final_dir)
        try:
            clean_leftovers(self.final_dir)
            if os.path.exists(self.final_dir) and not overwrite:
                self.refuse_existing(final_dir)
            name = os.path.basename(self.final_dir)
            self.path = os.path.join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
            os.makedirs(self.path)
        except BaseException:
            self.release()
            raise

    @property
    def overwrite(self) -> bool:
        """Whether the commit may replace an existing `final_dir`."""
        return self._overwrite

    @property
    def locked(self) -> bool:
        """Whether this run still holds the lock on `final_dir`."""
        return self._lock is not None and self._lock.held

    @staticmethod
    def refuse_existing(final_dir: str) -> None:
        """Raises the error for an existing output (callers may check early)."""
        raise OutputExistsError(
            f"Output directory {final_dir!r} already exists. Choose a new --output "
            "or pass --overwrite to replace it."
        )

    def commit(self) -> str:
        """Moves the staged directory into place, releases the lock; returns the final path.

        Raises:
          OutputExistsError: without overwrite, `final_dir` appeared after the
            run was set up; the staged results are kept (see `commit_directory`),
            and the lock stays held until `abort()` or `release()`.
        """
        commit_directory(self.path, self.final_dir, self._overwrite)
        _LOG.info("Wrote %s", self.final_dir)
        self.release()
        return self.final_dir

    def abort(self) -> None:
        """Deletes the staging directory (after a failure) and releases the lock.

        Finished results whose commit was refused are kept: without overwrite,
        when `final_dir` now exists and the staging directory holds a sealed
        manifest (written last, just before the commit), the error named the
        staging directory, so it stays.
        """
        try:
            if (
                not self._overwrite
                and os.path.lexists(self.final_dir)
                and os.path.isfile(os.path.join(self.path, MANIFEST))
            ):
                _LOG.warning("Kept the finished results at %s (%s appeared meanwhile).", self.path, self.final_dir)
                return
            shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self.release()

    def release(self) -> None:
        """Releases the lock on `final_dir` (deleting the lock file); idempotent.

        For stages that commit elsewhere (analyze commits on a worker): call
        it when the pipeline has finished, however it finished.
        """
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
