"""A job's output directory: staged beside --output, moved into place on success.

`transforms.outputs.StagedOutput` does the work; this adds what the CLI needs
from it: every refusal is a `FeaturebridgeError` (exit 2 with the message).
"""

from __future__ import annotations

from featurebridge.transforms.errors import UsageError
from featurebridge.transforms.outputs import StagedOutput

__all__ = ["stage_output"]


def stage_output(output: str, overwrite: bool) -> StagedOutput:
    """A StagedOutput for ``output`` (a local directory).

    Raises:
      OutputExistsError: it exists and ``overwrite`` is False.
      UsageError: it is a remote URL; outputs are written atomically, so only
        on a local or mounted filesystem.
    """
    try:
        return StagedOutput(output, overwrite=overwrite)
    except ValueError as e:  # the remote-URL refusal
        raise UsageError(str(e)) from None
