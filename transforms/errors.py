"""featurebridge's errors: one base class, one subclass per kind of failure.

Every error a user can act on derives from `FeaturebridgeError`, so callers
(the CLI, the expansion service, a user's own code) tell "your input, spec or
option is wrong" from a bug by ``isinstance``, never by class names or message
text. Each subclass also keeps the builtin base it always had (ValueError,
FileExistsError, RuntimeError), so ``except ValueError`` code keeps working.

Messages name the file, row, column or field that was wrong and say what to do.
Messages never echo a caller's value in full: `excerpt(value)` gives the
short, escaped form to quote. This module imports nothing heavy: the CLI and
the expansion service load it without TensorFlow.
"""

import reprlib

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
]  # and `excerpt`, the one helper: __all__ lists the error classes only


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


def excerpt(value, limit: int = 60) -> str:
    """A short, escaped repr of a value a caller sent, for error messages.

    Short values read as their repr (``'abc'``, ``1.5``, ``['a']``), so
    messages name them as before. A string longer than ``limit`` keeps its
    first ``limit`` characters and says how long it was (``'aaaa…' (50000000
    chars)``); control characters and newlines are escaped (repr's rules).
    Containers show their first few items, an integer too long to print
    says how many digits it has. The result stays under about ``limit + 40``
    characters whatever the value, and building it never walks or copies
    the whole value.
    """
    if isinstance(value, (str, bytes)):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} {'chars' if isinstance(value, str) else 'bytes'})"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    short = _SHORT_REPR.repr(value)
    if len(short) <= limit:
        return short
    return f"{short[:limit]}…"


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxset = _SHORT_REPR.maxdict = 5
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 40
_SHORT_REPR.maxlong = 60
