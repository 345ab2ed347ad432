"""Atomic output directories: artifacts are written into a staging directory
beside the destination and moved into place in one rename, so a reader never
sees a half-written artifact, and a failed run leaves nothing behind.

Without overwrite, the move never deletes or replaces anything: a directory
that appeared at the destination after the run was set up makes the commit
fail with `OutputExistsError`, and the finished results stay in the staging
directory (`commit_directory`)."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sys
import uuid

from featurebridge.transforms.errors import OutputExistsError, UsageError
from featurebridge.transforms.layout import MANIFEST

__all__ = ["OutputExistsError", "StagedOutput", "commit_directory"]

_LOG = logging.getLogger(__name__)

# renameat2(2) (Linux >= 3.15, glibc >= 2.28): the destination is never replaced.
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
# errno values meaning "something is at the destination" for each way of moving.
_EXISTS = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)


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
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
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
      overwrite: True: an existing `final_dir` is replaced (moved aside, then
        deleted). False: nothing at `final_dir` is ever deleted or replaced.

    Raises:
      OutputExistsError: `overwrite` is False and something is at `final_dir`
        (it appeared after the run was set up); `staging` is left as it is,
        and the message names both paths.
    """
    if overwrite:
        old = None
        if os.path.exists(final_dir):
            old = f"{staging}.old"
            os.rename(final_dir, old)
        os.rename(staging, final_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return final_dir
    try:
        _rename_noreplace(staging, final_dir)
    except OSError as e:
        if e.errno in _EXISTS:
            raise appeared_after_start(final_dir, staging) from None
        raise
    return final_dir


class StagedOutput:
    """A staging directory that becomes `final_dir` on `commit()`.

    The check for an existing `final_dir` happens here, on the launcher,
    before any pipeline starts.

    Args:
      final_dir: the destination directory (local filesystem).
      overwrite: replace an existing `final_dir` on commit. Without it the
        commit never deletes or replaces anything (see `commit_directory`).

    Raises:
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
        if os.path.exists(self.final_dir) and not overwrite:
            self.refuse_existing(final_dir)
        parent = os.path.dirname(self.final_dir)
        os.makedirs(parent, exist_ok=True)
        name = os.path.basename(self.final_dir)
        self.path = os.path.join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
        os.makedirs(self.path)
        self._overwrite = overwrite

    @property
    def overwrite(self) -> bool:
        """Whether the commit may replace an existing `final_dir`."""
        return self._overwrite

    @staticmethod
    def refuse_existing(final_dir: str) -> None:
        """Raises the error for an existing output (callers may check early)."""
        raise OutputExistsError(
            f"Output directory {final_dir!r} already exists. Choose a new --output "
            "or pass --overwrite to replace it."
        )

    def commit(self) -> str:
        """Moves the staged directory into place; returns the final path.

        Raises:
          OutputExistsError: without overwrite, `final_dir` appeared after the
            run was set up; the staged results are kept (see `commit_directory`).
        """
        commit_directory(self.path, self.final_dir, self._overwrite)
        _LOG.info("Wrote %s", self.final_dir)
        return self.final_dir

    def abort(self) -> None:
        """Deletes the staging directory (after a failure).

        Finished results whose commit was refused are kept: without overwrite,
        when `final_dir` now exists and the staging directory holds a sealed
        manifest (written last, just before the commit), the error named the
        staging directory, so it stays.
        """
        if (
            not self._overwrite
            and os.path.lexists(self.final_dir)
            and os.path.isfile(os.path.join(self.path, MANIFEST))
        ):
            _LOG.warning("Kept the finished results at %s (%s appeared meanwhile).", self.path, self.final_dir)
            return
        shutil.rmtree(self.path, ignore_errors=True)
