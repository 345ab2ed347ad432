"""Atomic output directories: artifacts are written into a staging directory
beside the destination and moved into place in one rename, so a reader never
sees a half-written artifact, and a failed run leaves nothing behind."""

from __future__ import annotations

import logging
import os
import shutil
import uuid

from featurebridge.transforms.errors import OutputExistsError, UsageError

__all__ = ["OutputExistsError", "StagedOutput"]

_LOG = logging.getLogger(__name__)



class StagedOutput:
    """A staging directory that becomes `final_dir` on `commit()`.

    The check for an existing `final_dir` happens here, on the launcher,
    before any pipeline starts.

    Args:
      final_dir: the destination directory (local filesystem).
      overwrite: replace an existing `final_dir` on commit.

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

    @staticmethod
    def refuse_existing(final_dir: str) -> None:
        """Raises the error for an existing output (callers may check early)."""
        raise OutputExistsError(
            f"Output directory {final_dir!r} already exists. Choose a new --output "
            "or pass --overwrite to replace it."
        )

    def commit(self) -> str:
        """Moves the staged directory into place; returns the final path."""
        old = None
        if os.path.exists(self.final_dir):
            old = f"{self.path}.old"
            os.rename(self.final_dir, old)
        os.rename(self.path, self.final_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        _LOG.info("Wrote %s", self.final_dir)
        return self.final_dir

    def abort(self) -> None:
        """Deletes the staging directory (after a failure)."""
        shutil.rmtree(self.path, ignore_errors=True)
