"""The parts of a feature spec: its columns (with their missing-value policy
and transforms), crosses and label, as frozen dataclasses.

Plain data, validated by featurebridge.transforms.spec_parse and assembled
into a `FeatureSpec` by featurebridge.transforms.spec. No TensorFlow, no Beam.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from featurebridge.transforms.spec_tables import DEFAULT_NULL_MARKERS, STORAGE_TYPES

__all__ = [
    "Column",
    "Cross",
    "Label",
    "MissingPolicy",
    "Transform",
    "output_names",
]


@dataclasses.dataclass(frozen=True)
class MissingPolicy:
    """What to do when a column's value is missing (empty cell, null or NaN).

    Attributes:
      policy: one of MISSING_POLICIES.
      value: the fill value when policy is "constant", else None.
    """

    policy: str = "reject"
    value: Any = None


@dataclasses.dataclass(frozen=True)
class Transform:
    """One transform applied to a (filled) raw column, producing one output.

    Attributes:
      type: one of TRANSFORM_TYPES.
      output: the name of the transformed feature.
      options: the transform's options with defaults filled in.
    """

    type: str
    output: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Column:
    """A raw input column.

    Attributes:
      name: the column's name in the spec, the graph and tf.Examples' keys
        (an identifier).
      type: one of COLUMN_TYPES.
      missing: the missing-value policy.
      transforms: the transforms whose outputs become model features.
      source: the column's name in the input files' header (any text);
        defaults to `name`.
      null_markers: cell texts that mean "missing" in this column (compared
        after trimming whitespace), besides empty and blank cells.
    """

    name: str
    type: str
    missing: MissingPolicy
    transforms: tuple[Transform, ...] = ()
    source: str = ""
    null_markers: tuple[str, ...] = DEFAULT_NULL_MARKERS

    def __post_init__(self):
        if not self.source:
            object.__setattr__(self, "source", self.name)

    @property
    def storage(self) -> str:
        """How values are held in batches and the graph: "float", "int" or "string"."""
        return STORAGE_TYPES[self.type]


@dataclasses.dataclass(frozen=True)
class Cross:
    """A hashed cross of categorical columns.

    Attributes:
      columns: the raw column names crossed, in order.
      hash_buckets: the number of hash buckets of the output.
      output: the transformed feature name.
    """

    columns: tuple[str, ...]
    hash_buckets: int
    output: str


@dataclasses.dataclass(frozen=True)
class Label:
    """The training label.

    Attributes:
      column: the raw column holding the label.
      kind: "binary", "multiclass" or "regression".
      positive: for a binary string label, the value that means 1.
    """

    column: str
    kind: str
    positive: Optional[str] = None


def output_names(
    columns: Sequence[Column], crosses: Sequence[Cross] = (), label: Optional[Label] = None
) -> tuple[str, ...]:
    """Names of the transformed features, in spec order (label last, if any):
    one per transform (two, ``_index`` and ``_weight``, per tf-idf), one per
    cross. Names produced twice appear twice (the parser refuses that)."""
    from featurebridge.transforms.ops import op_for  # ops import this module's tables

    names = []
    for c in columns:
        for t in c.transforms:
            names += op_for(t, c).output_names()
    names += [x.output for x in crosses]
    if label:
        names.append(label.column)
    return tuple(names)
