"""The allowlist: what the expansion service offers, and nothing else.

Each entry is one featurebridge stage, reachable two ways:

- as a SchemaTransform, by identifier (``beam:schematransform:org.featurebridge:...``),
  with a typed configuration Row listed by ``DiscoverSchemaTransform``;
- through Java's ``PythonExternalTransform`` (URN
  ``beam:transforms:python:fully_qualified_named``), by the exact fully
  qualified class name. Names are compared as whole strings and looked up in
  this table: nothing is imported by name and no attribute walk happens.

Configuration values must be strings (Row-encodable data, never callables).

Directories: every ``*_dir`` field must lie strictly inside one of the
service's allowed roots (`check_directories`; the roots are checked once at
start by `validate_roots`), and an ``output_dir`` is given to one expansion
only in a service's lifetime (`reserve_outputs`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Mapping, MutableSet, NamedTuple, Sequence, Tuple, Type

from featurebridge.transforms.errors import FeaturebridgeError, UsageError

__all__ = [
    "ENTRIES",
    "Entry",
    "FQN_URN",
    "OUTPUT_FIELDS",
    "RegistryError",
    "SCHEMA_TRANSFORM_URN",
    "by_class_name",
    "by_identifier",
    "check_directories",
    "fqn_config",
    "reserve_outputs",
    "validate_roots",
]

SCHEMA_TRANSFORM_URN = "beam:expansion:payload:schematransform:v1"
FQN_URN = "beam:transforms:python:fully_qualified_named"


class RegistryError(FeaturebridgeError, ValueError):
    """A request names something outside the allowlist or has a bad configuration."""


# Functional form: this module uses postponed annotations, which would turn
# class-body field types into strings (Beam would map them to Any).
AnalyzeAndTransformConfig = NamedTuple("AnalyzeAndTransformConfig", [("spec", str), ("output_dir", str)])
TransformConfig = NamedTuple("TransformConfig", [("analyzed_dir", str)])
PredictConfig = NamedTuple("PredictConfig", [("model_dir", str)])


@dataclasses.dataclass(frozen=True)
class Entry:
    """One offered stage.

    Attributes:
      identifier: the SchemaTransform identifier.
      class_name: the fully qualified name Java's PythonExternalTransform uses.
      config: a NamedTuple whose fields (all str) are the configuration.
      description: what discovery shows, including each field's meaning.
      inputs, outputs: the PCollection tags.
    """

    identifier: str
    class_name: str
    config: Type[NamedTuple]
    description: str
    inputs: Tuple[str, ...] = ("input",)
    outputs: Tuple[str, ...] = ("output", "rejected")

    @property
    def fields(self) -> Tuple[str, ...]:
        return tuple(self.config._fields)

    def check_config(self, values: Mapping[str, object]) -> Dict[str, str]:
        """Checks configuration values against the typed config.

        Raises:
          RegistryError: unknown or missing fields, or a non-string value.
        """
        unknown = sorted(set(values) - set(self.fields))
        missing = [f for f in self.fields if values.get(f) is None]
        if unknown or missing:
            parts = []
            if unknown:
                shown = [_excerpt(u, 40) for u in unknown[:10]]
                more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
                parts.append(f"unknown field(s) [{', '.join(shown)}]{more}")
            if missing:
                parts.append(f"missing field(s) {missing}")
            raise RegistryError(
                f"{self.identifier}: configuration has {' and '.join(parts)}; "
                f"the configuration is exactly {list(self.fields)} (all strings)."
            )
        for name in self.fields:
            if not isinstance(values[name], str):
                raise RegistryError(
                    f"{self.identifier}: configuration field {name!r} must be a string; "
                    f"got {type(values[name]).__name__}."
                )
        return {name: values[name] for name in self.fields}

    def build(self, values: Mapping[str, object], allowed_roots: Sequence[str]):
        """Constructs the PTransform (validating the configuration in its constructor).

        The directory check comes before the stage sees the values, so a path
        outside the roots gets the same answer whether it exists or not (the
        stage's own "already exists" check runs only inside the roots).

        Args:
          values: the configuration row as a dict.
          allowed_roots: the service's allowed roots (never empty; see
            `validate_roots`): every directory field (``*_dir``) must resolve
            to a path strictly inside one of them.

        Raises:
          RuntimeError: `allowed_roots` is empty (a bug in the server, not the caller's error).
          RegistryError: bad configuration fields, or a directory outside the roots.
          SpecError, OutputExistsError, ValueError: the stage rejects the values.
        """
        if not allowed_roots:
            raise RuntimeError("Entry.build needs the service's allowed roots; none were given (a server bug).")
        config = self.check_config(values)
        check_directories(self.identifier, config, allowed_roots)
        from featurebridge.transforms import xlang

        cls = xlang.XLANG_CLASSES.get(self.class_name)
        if cls is None:
            raise RegistryError(f"{self.identifier} is not available in this build of featurebridge.")
        return cls(**config)


# ---------------------------------------------------------------------------
# Directories: the allowed roots, confinement, one expansion per output_dir.

# Longer values are refused before any filesystem call (Linux's PATH_MAX).
_MAX_PATH_CHARS = 4096
# Configuration fields naming a directory the stage creates.
OUTPUT_FIELDS: Tuple[str, ...] = ("output_dir",)


def _excerpt(value: object, limit: int = 120) -> str:
    """A short, escaped (ASCII-only) excerpt of a caller's value for messages:
    at most `limit` characters of escaped text, then the value's length when cut."""
    text = value if isinstance(value, str) else repr(value)
    escaped = ascii(text[:limit])
    if len(text) <= limit and len(escaped) <= limit + 2:
        return escaped
    return f"{escaped[1:-1][:limit]!r}... ({len(text)} characters)"


def _is_inside(path: str, root: str, strictly: bool) -> bool:
    if path == root:
        return not strictly
    return path.startswith(root.rstrip(os.sep) + os.sep)


def _confined(value: object, roots: Sequence[str]) -> bool:
    """Whether `value` names a path strictly inside one of `roots` (already realpath'ed).

    The value must be an absolute path without '..' segments, NUL or URL
    scheme; it is resolved with symlinks followed for the part that exists,
    and so is its parent (where a staging directory goes), which must be
    inside a root too (it may be the root itself).
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_PATH_CHARS:
        return False
    if "\0" in value or "://" in value or not os.path.isabs(value):
        return False
    if ".." in value.split(os.sep):
        return False
    try:
        resolved = os.path.realpath(value)
        parent = os.path.realpath(os.path.dirname(os.path.normpath(value)))
    except (OSError, ValueError):  # unencodable characters and the like
        return False
    return any(_is_inside(resolved, r, strictly=True) and _is_inside(parent, r, strictly=False) for r in roots)


def check_directories(identifier: str, config: Mapping[str, object], allowed_roots: Sequence[str]) -> None:
    """Refuses directory fields (``*_dir``) that are not strictly inside an allowed root.

    A value must be an absolute path without '..' segments; it is resolved
    with symlinks followed for the part that exists (a link inside a root
    that points out is outside), and must be strictly inside a root (the
    root itself is refused: outputs are made beside it otherwise). The answer
    does not depend on whether the path exists, and the message holds only a
    short escaped excerpt of the value, never what it resolves to.

    Args:
      identifier: the entry's identifier, for the message.
      config: the configuration; fields not ending in ``_dir`` are ignored.
      allowed_roots: the service's roots (never empty; `validate_roots`' result).

    Raises:
      RuntimeError: `allowed_roots` is empty (a bug in the server).
      RegistryError: naming the field and the allowed roots.
    """
    if not allowed_roots:
        raise RuntimeError("check_directories needs the service's allowed roots; none were given (a server bug).")
    roots = [os.path.realpath(r) for r in allowed_roots]
    for name, value in config.items():
        if not name.endswith("_dir") or _confined(value, roots):
            continue
        raise RegistryError(
            f"{identifier}: configuration field {name!r} is outside the directories this "
            f"service allows ({list(allowed_roots)}); use an absolute path strictly inside "
            f"one of them, without '..' segments (got {_excerpt(value)})."
        )


def validate_roots(roots: Sequence[str]) -> Tuple[str, ...]:
    """Checks the service's allowed roots at start; returns them resolved.

    Args:
      roots: directories (relative ones are taken from the current directory).

    Returns:
      Each root made absolute with symlinks resolved, in order, without duplicates.

    Raises:
      UsageError: no root, or a root that does not exist or is not a directory
        (the message names it and says to create it first).
    """
    if not roots:
        raise UsageError("The expansion service needs at least one allowed root directory (--allowed_root).")
    resolved = []
    for root in roots:
        if not isinstance(root, str) or not root or "\0" in root:
            raise UsageError(f"Allowed root {_excerpt(root)} is not a directory path.")
        absolute = os.path.abspath(root)
        if not os.path.isabs(absolute):
            raise UsageError(f"Allowed root {root!r} is not an absolute path.")
        if not os.path.isdir(absolute):
            what = "is not a directory" if os.path.lexists(absolute) else "does not exist"
            raise UsageError(
                f"Allowed root {root!r} {what}. Create the directory first (mkdir -p), then start the service."
            )
        real = os.path.realpath(absolute)
        if real not in resolved:
            resolved.append(real)
    return tuple(resolved)


def reserve_outputs(identifier: str, config: Mapping[str, object], reserved: MutableSet[str]) -> Tuple[str, ...]:
    """Gives the configuration's output directories (`OUTPUT_FIELDS`) to one expansion.

    Each output directory is claimed once in a service's lifetime: a second
    expansion naming the same directory (by any spelling that resolves to
    it) is refused, so it cannot replace the first one's output. Call it
    after `Entry.build` succeeded (the roots and "already exists" checks
    come first), and hold a lock around the call when expansions run
    concurrently: the function takes none.

    Args:
      identifier: the entry's identifier, for the message.
      config: the configuration; fields outside `OUTPUT_FIELDS` are ignored.
      reserved: the caller's set of claimed directories; the new ones are added
        only when none of them was claimed before.

    Returns:
      The directories claimed by this call (resolved paths; empty for a stage
      that writes no directory).

    Raises:
      RegistryError: an output directory was already given to an earlier expansion.
    """
    claimed = []
    for name in OUTPUT_FIELDS:
        value = config.get(name)
        if not isinstance(value, str):
            continue
        key = os.path.realpath(os.path.normpath(value))
        if key in reserved or key in claimed:
            raise RegistryError(
                f"{identifier}: {name} {_excerpt(value)} was already given to an earlier expansion of "
                "this service; each expansion needs its own new directory."
            )
        claimed.append(key)
    reserved.update(claimed)
    return tuple(claimed)


ENTRIES: Tuple[Entry, ...] = (
    Entry(
        identifier="beam:schematransform:org.featurebridge:analyze_and_transform:v1",
        class_name="featurebridge.transforms.xlang.AnalyzeAndTransformRows",
        config=AnalyzeAndTransformConfig,
        description=(
            "featurebridge analyze-and-transform: one full TFT analyze pass over the input "
            "Rows, then the new transform_fn applied to them. Config: spec (STRING, the "
            "feature spec as YAML or JSON), output_dir (STRING, absolute path strictly inside "
            "one of the service's allowed roots, must not exist, one per expansion; receives "
            "transform_fn/, transformed_metadata/, transformed/, rejected/, constants.json, "
            "manifest.json; never replaced: a directory appearing there before the job ends "
            "fails the job and the results stay in a staging directory beside it). Input 'input': Rows with one nullable field per "
            "raw column. Outputs 'output': transformed Rows (key column, features, label); "
            "'rejected': Rows(source, row, column, value, reason)."
        ),
    ),
    Entry(
        identifier="beam:schematransform:org.featurebridge:transform:v1",
        class_name="featurebridge.transforms.xlang.TransformRows",
        config=TransformConfig,
        description=(
            "featurebridge transform: applies an existing transform_fn to raw Rows. Config: "
            "analyzed_dir (STRING, absolute path of an analyze output inside an allowed root). "
            "Input 'input': Rows with one nullable field per raw column (the label may be left "
            "out). Outputs "
            "'output': transformed Rows; 'rejected': Rows(source, row, column, value, reason)."
        ),
    ),
    Entry(
        identifier="beam:schematransform:org.featurebridge:predict:v1",
        class_name="featurebridge.transforms.xlang.PredictRows",
        config=PredictConfig,
        description=(
            "featurebridge predict: runs the exported serving model on raw Rows. Config: "
            "model_dir (STRING, absolute path of an export inside an allowed root; the "
            "SavedModel is the highest version under model_dir/serving/). "
            "Input 'input': Rows with one nullable field per raw column (no label needed). "
            "Outputs 'output': Rows with the key column (if any) and the model's outputs; "
            "'rejected': Rows(source, row, column, value, reason)."
        ),
    ),
)

_BY_ID = {e.identifier: e for e in ENTRIES}
_BY_CLASS = {e.class_name: e for e in ENTRIES}


def by_identifier(identifier: str) -> Entry:
    """The entry for a SchemaTransform identifier.

    Raises:
      RegistryError: the identifier is not offered (the message lists those that are).
    """
    entry = _BY_ID.get(identifier)
    if entry is None:
        raise RegistryError(
            f"SchemaTransform identifier {_excerpt(identifier, 200)} is not offered; this service "
            f"offers {sorted(_BY_ID)}."
        )
    return entry


def by_class_name(name: str) -> Entry:
    """The entry for a PythonExternalTransform fully qualified name.

    Raises:
      RegistryError: the name is not allowlisted (``__callable__``,
        ``__constructor__``, other modules and attribute walks included).
    """
    entry = _BY_CLASS.get(name)
    if entry is None:
        raise RegistryError(
            f"fully qualified name {_excerpt(name, 200)} is not allowed; PythonExternalTransform may "
            f"construct only {sorted(_BY_CLASS)} (no callables, no other names)."
        )
    return entry


def fqn_config(entry: Entry, args: Sequence[object], kwargs: Mapping[str, object]) -> Dict[str, object]:
    """Maps PythonExternalTransform args/kwargs onto the entry's config fields.

    Raises:
      RegistryError: too many positional args or a field given twice.
    """
    if len(args) > len(entry.fields):
        raise RegistryError(
            f"{entry.class_name} takes at most {len(entry.fields)} positional argument(s) "
            f"{list(entry.fields)}; got {len(args)}."
        )
    values: Dict[str, object] = dict(zip(entry.fields, args))
    for name, value in kwargs.items():
        if name in values:
            raise RegistryError(f"{entry.class_name}: argument {_excerpt(name)} given twice.")
        values[name] = value
    return values

