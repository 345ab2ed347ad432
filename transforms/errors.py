"""featurebridge's errors: one base class, one subclass per kind of failure.

Every error a user can act on derives from `FeaturebridgeError`, so callers
(the CLI, the expansion service, a user's own code) tell "your input, spec or
option is wrong" from a bug by ``isinstance``, never by class names or message
text. Each subclass also keeps the builtin base it always had (ValueError,
FileExistsError, RuntimeError), so ``except ValueError`` code keeps working.

Messages name the file, row, column or field that was wrong and say what to do.
This module imports nothing heavy: the CLI and the expansion service load it
without TensorFlow.
"""

__all__ = [
    "ArtifactError",
    "CountMismatchError",
    "EmptyDataError",
    "FeaturebridgeError",
    "InputError",
    "ModelDirError",
    "OutputExistsError",
    "SpecError",
    "TrainingError",
    "UsageError",
]


class FeaturebridgeError(Exception):
    """Base of every error featurebridge raises about what it was given."""


class UsageError(FeaturebridgeError, ValueError):
    """A command line or call is wrong: a missing, unknown or bad option."""


class SpecError(FeaturebridgeError, ValueError):
    """A feature spec is invalid. The message names the column and the field."""


class InputError(FeaturebridgeError, ValueError):
    """Input files cannot be read at all (missing, wrong format, missing column)."""


class EmptyDataError(FeaturebridgeError, ValueError):
    """No usable rows: analyzing would bake meaningless default constants."""


class CountMismatchError(FeaturebridgeError, RuntimeError):
    """Rows read != rows used + rows rejected: something was lost."""


class OutputExistsError(FeaturebridgeError, FileExistsError):
    """The output directory exists and overwriting was not asked for."""


class ArtifactError(FeaturebridgeError, ValueError):
    """A directory is not the featurebridge output it was passed as (an
    analyze output, a model), or it is incomplete."""


class ModelDirError(ArtifactError):
    """A path is not a featurebridge model (MODEL/ or MODEL/serving/)."""


class TrainingError(FeaturebridgeError, ValueError):
    """The analyzed data cannot be trained on (no label, no rows, bad options)."""
