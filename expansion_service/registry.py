"""The allowlist: what the expansion service offers, and nothing else.

Each entry is one featurebridge stage, reachable two ways:

- as a SchemaTransform, by identifier (``beam:schematransform:org.featurebridge:...``),
  with a typed configuration Row listed by ``DiscoverSchemaTransform``;
- through Java's ``PythonExternalTransform`` (URN
  ``beam:transforms:python:fully_qualified_named``), by the exact fully
  qualified class name. Names are compared as whole strings and looked up in
  this table: nothing is imported by name and no attribute walk happens.

Configuration values must be strings (Row-encodable data, never callables).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Mapping, NamedTuple, Sequence, Tuple, Type

from featurebridge.transforms.errors import FeaturebridgeError

__all__ = [
    "ENTRIES",
    "Entry",
    "FQN_URN",
    "RegistryError",
    "SCHEMA_TRANSFORM_URN",
    "by_class_name",
    "by_identifier",
    "check_directories",
    "fqn_config",
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
                parts.append(f"unknown field(s) {unknown}")
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

    def build(self, values: Mapping[str, object], allowed_roots: Sequence[str] = ()):
        """Constructs the PTransform (validating the configuration in its constructor).

        Args:
          values: the configuration row as a dict.
          allowed_roots: when non-empty, every directory field (``*_dir``) must
            resolve, symlinks followed, to a path inside one of these.

        Raises:
          RegistryError: bad configuration fields, or a directory outside the roots.
          SpecError, OutputExistsError, ValueError: the stage rejects the values.
        """
        config = self.check_config(values)
        if allowed_roots:
            check_directories(self.identifier, config, allowed_roots)
        from featurebridge.transforms import xlang

        cls = xlang.XLANG_CLASSES.get(self.class_name)
        if cls is None:
            raise RegistryError(f"{self.identifier} is not available in this build of featurebridge.")
        return cls(**config)


def check_directories(identifier: str, config: Mapping[str, str], allowed_roots: Sequence[str]) -> None:
    """Refuses directory fields outside the service's allowed roots.

    Raises:
      RegistryError: naming the field and the allowed roots (not the resolved path).
    """
    roots = [os.path.realpath(r) for r in allowed_roots]
    for name, value in config.items():
        if not name.endswith("_dir"):
            continue
        resolved = os.path.realpath(value)
        if not any(resolved == r or resolved.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            raise RegistryError(
                f"{identifier}: configuration field {name!r} is outside the directories this "
                f"service allows ({list(allowed_roots)}); use a path under one of them."
            )


ENTRIES: Tuple[Entry, ...] = (
    Entry(
        identifier="beam:schematransform:org.featurebridge:analyze_and_transform:v1",
        class_name="featurebridge.transforms.xlang.AnalyzeAndTransformRows",
        config=AnalyzeAndTransformConfig,
        description=(
            "featurebridge analyze-and-transform: one full TFT analyze pass over the input "
            "Rows, then the new transform_fn applied to them. Config: spec (STRING, the "
            "feature spec as YAML or JSON), output_dir (STRING, absolute path, must not "
            "exist; receives transform_fn/, transformed_metadata/, transformed/, rejected/, "
            "constants.json, manifest.json). Input 'input': Rows with one nullable field per "
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
            "analyzed_dir (STRING, absolute path of an analyze output). Input 'input': Rows "
            "with one nullable field per raw column (the label may be left out). Outputs "
            "'output': transformed Rows; 'rejected': Rows(source, row, column, value, reason)."
        ),
    ),
    Entry(
        identifier="beam:schematransform:org.featurebridge:predict:v1",
        class_name="featurebridge.transforms.xlang.PredictRows",
        config=PredictConfig,
        description=(
            "featurebridge predict: runs the exported serving model on raw Rows. Config: "
            "model_dir (STRING, absolute path of an export; the SavedModel is model_dir/serving). "
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
            f"SchemaTransform identifier {identifier[:200]!r} is not offered; this service "
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
            f"fully qualified name {name[:200]!r} is not allowed; PythonExternalTransform may "
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
            raise RegistryError(f"{entry.class_name}: argument {name!r} given twice.")
        values[name] = value
    return values

