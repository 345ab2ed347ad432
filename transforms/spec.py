"""The feature spec: a declarative description of raw columns and their transforms.

A spec is data (YAML or JSON), so a Java caller can send it as a string across
the language boundary. This module holds `FeatureSpec` (the validated spec,
its queries and its canonical form) and `load_spec`; it knows nothing of
TensorFlow or Beam. Its parts live in featurebridge.transforms.spec_parts and
.input_format, the tables of types and spellings in .spec_tables, the
validation in .spec_parse (every name of these is re-exported here), the
bounds every spec is held to (its size, depth, counts and sizes) in
.spec_limits (SpecLimits, UNLIMITED and the active limits are re-exported)
and the safe YAML reading in .spec_yaml.

Example::

    key: trip_id
    label: {column: tipped, kind: binary}
    columns:
      - name: fare
        type: float
        missing: mean
        transforms: [zscore, {type: bucketize, num_buckets: 10}]
      - name: company
        type: string
        missing: {constant: "unknown"}
        transforms: [{type: vocabulary, top_k: 1000, num_oov_buckets: 1}]
    crosses:
      - {columns: [company, payment_type], hash_buckets: 1000}

Missing values have one meaning everywhere (readers, the Beam transform,
`featurebridge predict` and every serving signature): an absent value, a null,
a float NaN, an empty or blank string, or a cell that is one of the column's
null markers (by default the strings pandas reads as missing: ``NA``, ``N/A``,
``NaN``, ``null``, ``None``...). The markers are set for the whole input under
``input: {null_markers: [...]}`` and per column with ``null_markers:``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Optional

from featurebridge.transforms.errors import SpecError, excerpt
from featurebridge.transforms.input_format import InputFormat
from featurebridge.transforms.spec_parse import parse_spec_fields, safe_name
from featurebridge.transforms.spec_yaml import load_yaml
from featurebridge.transforms.spec_parts import Column, Cross, Label, MissingPolicy, Transform, output_names
from featurebridge.transforms.spec_limits import (
    UNLIMITED,
    SpecLimits,
    active_limits,
    check_structure,
    check_text_size,
    set_active_limits,
)
from featurebridge.transforms.spec_tables import (
    BOOL_SPELLINGS,
    COLUMN_TYPES,
    DEFAULT_NULL_MARKERS,
    LABEL_KINDS,
    MISSING_POLICIES,
    SPLIT_FEATURE,
    STORAGE_TYPES,
    TIMESTAMP_PARTS,
    TIMESTAMP_PATTERN,
)
from featurebridge.transforms.ops import TRANSFORM_TYPES

# The parts, tables and parser are re-exported: callers import every spec name from here.
__all__ = [
    "BOOL_SPELLINGS",
    "COLUMN_TYPES",
    "Column",
    "Cross",
    "DEFAULT_NULL_MARKERS",
    "FeatureSpec",
    "InputFormat",
    "Label",
    "LABEL_KINDS",
    "MISSING_POLICIES",
    "MissingPolicy",
    "SpecError",
    "SpecLimits",
    "SPLIT_FEATURE",
    "STORAGE_TYPES",
    "TIMESTAMP_PARTS",
    "TIMESTAMP_PATTERN",
    "TRANSFORM_TYPES",
    "Transform",
    "UNLIMITED",
    "active_limits",
    "load_spec",
    "safe_name",
    "set_active_limits",
]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """A validated feature spec. Build one with `FeatureSpec.from_dict`,
    `FeatureSpec.from_text` or `load_spec`."""

    columns: tuple[Column, ...]
    label: Optional[Label] = None
    key: Optional[str] = None
    crosses: tuple[Cross, ...] = ()
    source: str = "<spec>"
    input: InputFormat = InputFormat()

    # ---- construction -------------------------------------------------
    @classmethod
    def from_text(
        cls, text: str, source: str = "<spec>", limits: Optional[SpecLimits] = None, trusted: bool = False
    ) -> "FeatureSpec":
        """Parses a YAML or JSON string (JSON is valid YAML).

        Args:
          text: the spec.
          source: what to call it in errors (a file name).
          limits: the bounds to check (see featurebridge.transforms.spec_limits);
            None: `active_limits()`.
          trusted: the text is featurebridge's own canonical spec (a manifest's,
            a worker's copy), checked when it was first parsed: no limits apply.

        Raises:
          SpecError: if the text is not YAML/JSON, is over a limit or the spec
            is invalid. The message quotes at most a short excerpt of the text.
        """
        limits = _limits(limits, trusted)
        check_text_size(len(text) if isinstance(text, bytes) else _utf8_size(text, limits), source, limits)
        return cls.from_dict(load_yaml(text, source, limits), source=source, limits=limits)

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "<spec>", limits: Optional[SpecLimits] = None, trusted: bool = False
    ) -> "FeatureSpec":
        """Validates a parsed spec mapping (`limits` and `trusted` as in `from_text`;
        there is no text to measure, but depth, nodes and every other bound apply).

        Raises:
          SpecError: naming the column and field that is wrong and what is allowed.
        """
        limits = _limits(limits, trusted)
        check_structure(data, source, limits)
        return cls(**parse_spec_fields(data, source, limits))

    # ---- queries ------------------------------------------------------
    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the transformed features (label last, if any)."""
        return output_names(self.columns, self.crosses, self.label)

    @property
    def source_names(self) -> tuple[str, ...]:
        """The columns' names in the input files, in spec order."""
        return tuple(c.source for c in self.columns)

    def to_dict(self) -> dict:
        """A canonical plain-dict form (used for digests and round trips).
        Fields left at their defaults are omitted, so older specs keep their digest."""
        columns = []
        for c in self.columns:
            entry = {
                "name": c.name,
                "type": c.type,
                "missing": _missing_to_dict(c),
                "transforms": [
                    {"type": t.type, "name": t.output, **dict(t.options)}
                    for t in c.transforms
                ],
            }
            if c.source != c.name:
                entry["source"] = c.source
            if c.null_markers != self.input.null_markers:
                entry["null_markers"] = list(c.null_markers)
            columns.append(entry)
        out: dict = {"columns": columns}
        if self.input.to_dict():
            out["input"] = self.input.to_dict()
        if self.crosses:
            out["crosses"] = [
                {"columns": list(x.columns), "hash_buckets": x.hash_buckets, "name": x.output}
                for x in self.crosses
            ]
        if self.label:
            out["label"] = {"column": self.label.column, "kind": self.label.kind}
            if self.label.positive is not None:
                out["label"]["positive"] = self.label.positive
        if self.key:
            out["key"] = self.key
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """sha256 of the canonical JSON form: equal specs have equal digests."""
        return "sha256:" + hashlib.sha256(self.to_json().encode()).hexdigest()


def _limits(limits: Optional[SpecLimits], trusted: bool) -> SpecLimits:
    if trusted:
        return UNLIMITED
    return active_limits() if limits is None else limits


def _utf8_size(text: str, limits: SpecLimits) -> int:
    """The text's UTF-8 size, without encoding a text that is clearly too large."""
    if len(text) > limits.spec_bytes or len(text) * 4 <= limits.spec_bytes:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _missing_to_dict(column: Column):
    policy = column.missing
    if policy.policy != "constant":
        return policy.policy
    if column.type == "bool":
        return {"constant": bool(policy.value)}
    return {"constant": policy.value}


def load_spec(path_or_text: str, limits: Optional[SpecLimits] = None) -> FeatureSpec:
    """Loads a spec from a file path, or parses it if it is inline YAML/JSON.

    `limits`: as in `FeatureSpec.from_text` (None: `active_limits()`); a file
    over ``spec_bytes`` is refused by its size, before it is read.

    Raises:
      SpecError: the file is missing/unreadable, too large or the spec is invalid.
    """
    limits = active_limits() if limits is None else limits
    looks_inline = "\n" in path_or_text or path_or_text.lstrip().startswith("{") or len(path_or_text) > 4096
    if looks_inline:
        return FeatureSpec.from_text(path_or_text, source="<inline spec>", limits=limits)
    if not os.path.exists(path_or_text):
        raise SpecError(
            f"Spec file {excerpt(path_or_text, 300)} does not exist. Pass --spec with the path "
            "of a YAML or JSON feature spec (see README, 'The feature spec')."
        )
    try:
        if os.path.isfile(path_or_text):
            check_text_size(os.path.getsize(path_or_text), path_or_text, limits)
        with open(path_or_text, encoding="utf-8") as f:
            text = f.read(limits.spec_bytes + 1)
    except OSError as e:
        raise SpecError(f"Cannot read spec file {excerpt(path_or_text, 300)}: {e.strerror}.") from None
    except UnicodeDecodeError as e:
        raise SpecError(
            f"Cannot read spec file {excerpt(path_or_text, 300)}: it is not UTF-8 text (byte {e.start})."
        ) from None
    return FeatureSpec.from_text(text, source=path_or_text, limits=limits)
