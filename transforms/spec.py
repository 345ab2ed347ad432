"""The feature spec: a declarative description of raw columns and their transforms.

A spec is data (YAML or JSON), so a Java caller can send it as a string across
the language boundary. This module parses and validates it into frozen
dataclasses and knows nothing of TensorFlow or Beam.

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
import re
from typing import Any, Mapping, Optional, Sequence

import yaml

from featurebridge.transforms.errors import SpecError

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
    "SPLIT_FEATURE",
    "STORAGE_TYPES",
    "TIMESTAMP_PARTS",
    "TIMESTAMP_PATTERN",
    "TRANSFORM_TYPES",
    "Transform",
    "load_spec",
    "safe_name",
]

COLUMN_TYPES = ("float", "int", "string", "bool", "timestamp")
# How each column type is held in Arrow batches, tf.Examples and the TF graph:
# a bool is an int 0/1 (tf.Example has no bool), a timestamp its ISO 8601 text.
STORAGE_TYPES: Mapping[str, str] = {
    "float": "float",
    "int": "int",
    "string": "string",
    "bool": "int",
    "timestamp": "string",
}
# What pandas.read_csv reads as missing by default (besides an empty cell).
DEFAULT_NULL_MARKERS = (
    "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None",
    "<NA>", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN",
)
# ISO 8601 date or date-time, wall-clock time as written: 2024-03-01,
# 2024-03-01 14:05, 2024-03-01T14:05:09.123Z. The readers (pyarrow, RE2) and
# the graph (tf.strings.regex_full_match, RE2) use this same pattern.
TIMESTAMP_PATTERN = (
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?Z?)?"
)
# A transformed feature every analyze output carries: the row's bucket (0-99)
# for the train/eval split (see preprocessing.split_bucket). Not a model input.
SPLIT_FEATURE = "__split_bucket__"
# How a bool cell may be written (compared lower-cased): the readers and the
# tf.Example builder both use this one table.
BOOL_SPELLINGS: Mapping[str, int] = {
    "true": 1, "t": 1, "yes": 1, "y": 1, "1": 1, "1.0": 1,
    "false": 0, "f": 0, "no": 0, "n": 0, "0": 0, "0.0": 0,
}
# Parts a timestamp column derives as int features (day_of_week: Monday = 0).
TIMESTAMP_PARTS = ("year", "month", "day", "day_of_week", "day_of_year", "hour", "minute")
LABEL_KINDS = ("binary", "multiclass", "regression")
MISSING_POLICIES = ("mean", "median", "most_frequent", "constant", "reject")

_NUMERIC = ("float", "int")
# transform type -> (allowed column types, {option: (python types, default)})
# A default of _REQUIRED means the option must be given.
_REQUIRED = object()
_NUM = (int, float)
TRANSFORM_TYPES: Mapping[str, tuple] = {
    "zscore": (_NUMERIC, {}),
    "scale_0_1": (_NUMERIC, {}),
    "min_max": (_NUMERIC, {"output_min": (_NUM, 0.0), "output_max": (_NUM, 1.0)}),
    "bucketize": (_NUMERIC, {"num_buckets": (int, _REQUIRED)}),
    "vocabulary": (
        ("string", "int", "bool"),
        {
            "top_k": (int, None),
            "frequency_threshold": (int, None),
            "num_oov_buckets": (int, 1),
        },
    ),
    "hash": (("string", "int", "bool"), {"hash_buckets": (int, _REQUIRED)}),
    "log1p": (_NUMERIC, {}),
    "clip": (_NUMERIC, {"min": (_NUM, None), "max": (_NUM, None)}),
    "identity": (("float", "int", "string", "bool"), {}),
    "ngrams": (
        ("string",),
        {
            "ngram_range": (list, [1, 1]),
            "separator": (str, " "),
            "top_k": (int, None),
            "num_oov_buckets": (int, 1),
        },
    ),
    "bag_of_words": (
        ("string",),
        {
            "ngram_range": (list, [1, 1]),
            "separator": (str, " "),
            "top_k": (int, None),
            "num_oov_buckets": (int, 1),
        },
    ),
    "tfidf": (
        ("string",),
        {
            "ngram_range": (list, [1, 1]),
            "separator": (str, " "),
            "vocab_size": (int, _REQUIRED),
        },
    ),
    **{part: (("timestamp",), {}) for part in TIMESTAMP_PARTS},
}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIMESTAMP_RE = re.compile(f"^(?:{TIMESTAMP_PATTERN})$")
_BOOL_CONSTANTS = {True: 1, False: 0}


def safe_name(text: str) -> str:
    """An identifier for a header name: runs of other characters become one
    underscore (``petal width (cm)`` -> ``petal_width_cm``)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "column"
    return name if not name[0].isdigit() else f"c_{name}"



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

    def option(self, name: str) -> Any:
        return self.options.get(name)


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
class InputFormat:
    """How the input files are written (the CSV dialect applies to CSV only).

    Attributes:
      delimiter: the CSV field separator (one character).
      quote: the CSV quote character (one character).
      header: whether the first CSV line names the columns.
      column_names: the CSV columns in order, when `header` is false.
      encoding: the text encoding of CSV and JSON lines files.
      null_markers: the default null markers of every column.
      skip_initial_space: drop the spaces that start a string or timestamp
        value (pandas' ``skipinitialspace``, for files written ``a, b, c``).
        The serving graph drops them too.
    """

    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    null_markers: tuple[str, ...] = DEFAULT_NULL_MARKERS
    skip_initial_space: bool = False

    def to_dict(self) -> dict:
        """The fields that differ from the defaults."""
        default = InputFormat()
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != getattr(default, field.name):
                out[field.name] = list(value) if isinstance(value, tuple) else value
        return out


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
    def from_text(cls, text: str, source: str = "<spec>") -> "FeatureSpec":
        """Parses a YAML or JSON string (JSON is valid YAML).

        Raises:
          SpecError: if the text is not YAML/JSON or the spec is invalid.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError(
                f"{source}: not valid YAML or JSON ({e}). Check indentation and quoting."
            ) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<spec>") -> "FeatureSpec":
        """Validates a parsed spec mapping.

        Raises:
          SpecError: naming the column and field that is wrong and what is allowed.
        """
        return _parse_spec(data, source)

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
        names = []
        for c in self.columns:
            for t in c.transforms:
                if t.type == "tfidf":
                    names += [t.output + "_index", t.output + "_weight"]
                else:
                    names.append(t.output)
        names += [x.output for x in self.crosses]
        if self.label:
            names.append(self.label.column)
        return tuple(names)

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


def _missing_to_dict(column: Column):
    policy = column.missing
    if policy.policy != "constant":
        return policy.policy
    if column.type == "bool":
        return {"constant": bool(policy.value)}
    return {"constant": policy.value}


def load_spec(path_or_text: str) -> FeatureSpec:
    """Loads a spec from a file path, or parses it if it is inline YAML/JSON.

    Raises:
      SpecError: the file is missing/unreadable or the spec is invalid.
    """
    looks_inline = "\n" in path_or_text or path_or_text.lstrip().startswith("{")
    if looks_inline:
        return FeatureSpec.from_text(path_or_text, source="<inline spec>")
    if not os.path.exists(path_or_text):
        raise SpecError(
            f"Spec file {path_or_text!r} does not exist. Pass --spec with the path "
            "of a YAML or JSON feature spec (see README, 'The feature spec')."
        )
    try:
        with open(path_or_text, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SpecError(f"Cannot read spec file {path_or_text!r}: {e.strerror}.") from None
    return FeatureSpec.from_text(text, source=path_or_text)


# ---------------------------------------------------------------------------
# Parsing helpers. Every error names where in the spec it is.


def _fail(where: str, msg: str) -> SpecError:
    return SpecError(f"{where}: {msg}")


def _check_keys(obj: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise _fail(
            where, f"unknown field(s) {unknown}; allowed fields are {sorted(allowed)}."
        )


def _parse_spec(data: Any, source: str) -> FeatureSpec:
    if not isinstance(data, Mapping):
        raise _fail(
            source,
            f"a spec must be a mapping with a 'columns' list; got {type(data).__name__}.",
        )
    _check_keys(data, ["version", "input", "columns", "label", "key", "crosses"], source)
    input_format = _parse_input(data.get("input"), f"{source}: input")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise _fail(source, "'columns' must be a non-empty list of column entries.")
    label_name = None
    if data.get("label") is not None:
        raw_label = data["label"]
        if isinstance(raw_label, str):
            raise _fail(
                f"{source}: label",
                "must be a mapping like {column: NAME, kind: binary|multiclass|regression}.",
            )
        label_name = raw_label.get("column") if isinstance(raw_label, Mapping) else None
    key_name = data.get("key")

    columns = []
    seen = set()
    for i, raw in enumerate(raw_columns):
        col = _parse_column(raw, f"{source}: columns[{i}]", label_name, key_name, input_format)
        if col.name in seen:
            raise _fail(f"{source}: column {col.name!r}", "is declared twice.")
        seen.add(col.name)
        same_source = [c.name for c in columns if c.source == col.source]
        if same_source:
            raise _fail(
                f"{source}: column {col.name!r}",
                f"reads file column {col.source!r}, which column {same_source[0]!r} "
                "already reads; declare each file column once.",
            )
        columns.append(col)
    if input_format.column_names:
        unnamed = [c.source for c in columns if c.source not in input_format.column_names]
        if unnamed:
            raise _fail(
                f"{source}: input, field 'column_names'",
                f"does not list the spec column(s) {unnamed}; list every file column in order.",
            )
    by_name = {c.name: c for c in columns}

    label = None
    if data.get("label") is not None:
        label = _parse_label(data["label"], f"{source}: label", by_name)
    if key_name is not None:
        if not isinstance(key_name, str) or key_name not in by_name:
            raise _fail(
                f"{source}: key",
                f"{key_name!r} is not a declared column; declare it under 'columns' "
                f"(declared: {sorted(by_name)}).",
            )
        if by_name[key_name].transforms:
            raise _fail(f"{source}: key", f"the key column {key_name!r} cannot have transforms.")

    crosses = []
    for i, raw in enumerate(data.get("crosses") or []):
        crosses.append(_parse_cross(raw, f"{source}: crosses[{i}]", by_name))

    spec = FeatureSpec(
        columns=tuple(columns),
        label=label,
        key=key_name,
        crosses=tuple(crosses),
        source=source,
        input=input_format,
    )
    outputs = spec.output_names
    dupes = sorted({n for n in outputs if outputs.count(n) > 1})
    if dupes:
        raise _fail(
            source,
            f"transformed feature name(s) {dupes} are produced twice; give one of "
            "the transforms a distinct 'name'.",
        )
    if not any(c.transforms for c in columns) and not crosses:
        raise _fail(source, "no column has transforms, so there would be no features.")
    return spec


def _parse_input(raw: Any, where: str) -> InputFormat:
    if raw is None:
        return InputFormat()
    if not isinstance(raw, Mapping):
        raise _fail(where, f"must be a mapping of input options; got {raw!r}.")
    allowed = [f.name for f in dataclasses.fields(InputFormat)]
    _check_keys(raw, allowed, where)
    values = {}
    for field in ("delimiter", "quote"):
        if field in raw:
            v = raw[field]
            if not isinstance(v, str) or len(v) != 1 or v in "\r\n":
                raise _fail(where, f"field {field!r} must be one character; got {v!r}.")
            values[field] = v
    for field in ("header", "skip_initial_space"):
        if field in raw:
            if not isinstance(raw[field], bool):
                raise _fail(where, f"field {field!r} must be true or false; got {raw[field]!r}.")
            values[field] = raw[field]
    if "column_names" in raw:
        names = raw["column_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _fail(where, f"field 'column_names' must be a list of strings; got {names!r}.")
        if len(set(names)) != len(names):
            raise _fail(where, f"field 'column_names' names a column twice: {names!r}.")
        values["column_names"] = tuple(names)
    if values.get("header", True) and "column_names" in values:
        raise _fail(where, "give 'column_names' only with 'header: false' (a header row names the columns).")
    if values.get("header", True) is False and "column_names" not in values:
        raise _fail(where, "'header: false' needs 'column_names': the file's columns in order.")
    if "encoding" in raw:
        import codecs

        try:
            values["encoding"] = codecs.lookup(str(raw["encoding"])).name
        except LookupError:
            raise _fail(where, f"field 'encoding' {raw['encoding']!r} is not a known text encoding (e.g. utf-8, latin-1, cp1252).") from None
    if "null_markers" in raw:
        values["null_markers"] = _parse_markers(raw["null_markers"], f"{where}, field 'null_markers'")
    return InputFormat(**values)


def _parse_markers(raw: Any, where: str) -> tuple:
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise _fail(where, f"must be a list of strings (use [] for none); got {raw!r}.")
    return tuple(m.strip() for m in raw if m.strip())


def _parse_column(raw: Any, where: str, label_name, key_name, input_format: InputFormat = InputFormat()) -> Column:
    if not isinstance(raw, Mapping):
        raise _fail(where, f"a column must be a mapping with 'name' and 'type'; got {raw!r}.")
    _check_keys(raw, ["name", "type", "missing", "transforms", "source", "null_markers"], where)
    name = raw.get("name")
    source_name = raw.get("source")
    if source_name is not None and (not isinstance(source_name, str) or not source_name):
        raise _fail(where, f"'source' must be the column's name in the file header; got {source_name!r}.")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        hint = ""
        if isinstance(name, str) and name:
            hint = (
                f" To read a file column named {name!r}, write "
                f"`name: {safe_name(name)}` and `source: {json.dumps(name)}`."
            )
        raise _fail(
            where,
            f"'name' must be an identifier (letters, digits, underscore); got {name!r}.{hint}",
        )
    where = f"{where.split(':')[0]}: column {name!r}"
    markers = input_format.null_markers
    if "null_markers" in raw:
        markers = _parse_markers(raw["null_markers"], f"{where}, field 'null_markers'")
    ctype = raw.get("type")
    if ctype not in COLUMN_TYPES:
        raise _fail(where, f"field 'type' is {ctype!r}; allowed: {list(COLUMN_TYPES)}.")
    missing = _parse_missing(raw.get("missing", "reject"), ctype, f"{where}, field 'missing'")
    if name in (label_name, key_name) and missing.policy != "reject":
        raise _fail(
            f"{where}, field 'missing'",
            "the label and key columns cannot be filled; use 'reject' (the default).",
        )
    raw_transforms = raw.get("transforms") or []
    if not isinstance(raw_transforms, list):
        raise _fail(where, "field 'transforms' must be a list.")
    transforms = tuple(
        _parse_transform(t, ctype, name, f"{where}, transforms[{j}]")
        for j, t in enumerate(raw_transforms)
    )
    return Column(
        name=name, type=ctype, missing=missing, transforms=transforms,
        source=source_name or name, null_markers=markers,
    )


def _parse_missing(raw: Any, ctype: str, where: str) -> MissingPolicy:
    if isinstance(raw, Mapping):
        if set(raw) != {"constant"}:
            raise _fail(
                where,
                f"a mapping must be {{constant: VALUE}}; got keys {sorted(raw)}. "
                f"Or use one of {[p for p in MISSING_POLICIES if p != 'constant']}.",
            )
        value = raw["constant"]
        ok = {
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "timestamp": isinstance(value, str) and bool(_TIMESTAMP_RE.match(value)),
        }[ctype]
        if not ok:
            hint = {
                "bool": " Use true or false.",
                "timestamp": " Use an ISO 8601 date or date-time, e.g. '2024-01-31' or '2024-01-31 08:00'.",
            }.get(ctype, "")
            raise _fail(where, f"constant {value!r} is not a valid {ctype} value.{hint}")
        if ctype == "bool":
            return MissingPolicy("constant", _BOOL_CONSTANTS[value])
        return MissingPolicy("constant", float(value) if ctype == "float" else value)
    if raw not in MISSING_POLICIES or raw == "constant":
        raise _fail(
            where,
            f"got {raw!r}; allowed: 'mean', 'median', 'most_frequent', 'reject' "
            "or {constant: VALUE}.",
        )
    if raw in ("mean", "median") and ctype not in _NUMERIC:
        raise _fail(where, f"{raw!r} needs a float or int column; this one is {ctype}.")
    return MissingPolicy(raw)


def _parse_transform(raw: Any, ctype: str, column: str, where: str) -> Transform:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping) or "type" not in raw:
        raise _fail(where, f"a transform is a name or a mapping with 'type'; got {raw!r}.")
    ttype = raw["type"]
    if ttype not in TRANSFORM_TYPES:
        raise _fail(
            where, f"transform type {ttype!r} is unknown; allowed: {sorted(TRANSFORM_TYPES)}."
        )
    where = f"{where} ({ttype})"
    allowed_types, option_specs = TRANSFORM_TYPES[ttype]
    if ctype not in allowed_types:
        raise _fail(
            where, f"applies to {list(allowed_types)} columns; this column is {ctype}."
        )
    _check_keys(raw, ["type", "name", *option_specs], where)
    options = {}
    for opt, (types, default) in option_specs.items():
        if opt not in raw or (raw[opt] is None and default is None):
            if default is _REQUIRED:
                raise _fail(where, f"field {opt!r} is required.")
            options[opt] = default
            continue
        value = raw[opt]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _fail(where, f"field {opt!r} must be {_type_words(types)}; got {value!r}.")
        options[opt] = value
    _check_transform_options(ttype, options, where)
    output = raw.get("name") or f"{column}_{ttype}"
    if not isinstance(output, str) or not _NAME_RE.match(output):
        raise _fail(where, f"field 'name' must be an identifier; got {output!r}.")
    return Transform(type=ttype, output=output, options=options)


def _type_words(types) -> str:
    if types is _NUM:
        return "a number"
    return {int: "an integer", str: "a string", list: "a list"}.get(types, str(types))


def _check_transform_options(ttype: str, o: dict, where: str) -> None:
    def positive(name, minimum=1):
        if o.get(name) is not None and o[name] < minimum:
            raise _fail(where, f"field {name!r} must be >= {minimum}; got {o[name]}.")

    if ttype == "bucketize":
        positive("num_buckets", 2)
    if ttype == "hash":
        positive("hash_buckets", 1)
    if ttype in ("vocabulary", "ngrams", "bag_of_words"):
        positive("top_k", 1)
        positive("frequency_threshold", 0)
        positive("num_oov_buckets", 0)
    if ttype == "tfidf":
        positive("vocab_size", 1)
    if ttype == "min_max" and o["output_min"] >= o["output_max"]:
        raise _fail(where, "'output_min' must be less than 'output_max'.")
    if ttype == "clip":
        if o["min"] is None and o["max"] is None:
            raise _fail(where, "give 'min', 'max' or both.")
        if o["min"] is not None and o["max"] is not None and o["min"] > o["max"]:
            raise _fail(where, "'min' must not exceed 'max'.")
    if "ngram_range" in o:
        r = o["ngram_range"]
        if (
            len(r) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in r)
            or not 1 <= r[0] <= r[1]
        ):
            raise _fail(where, f"'ngram_range' must be [min, max] with 1 <= min <= max; got {r!r}.")
        o["ngram_range"] = [int(r[0]), int(r[1])]


def _parse_label(raw: Any, where: str, by_name: Mapping[str, Column]) -> Label:
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a mapping {column: NAME, kind: binary|multiclass|regression}.")
    _check_keys(raw, ["column", "kind", "positive"], where)
    column, kind = raw.get("column"), raw.get("kind")
    if column not in by_name:
        raise _fail(
            where,
            f"column {column!r} is not declared under 'columns' (declared: {sorted(by_name)}).",
        )
    if kind not in LABEL_KINDS:
        raise _fail(where, f"field 'kind' is {kind!r}; allowed: {list(LABEL_KINDS)}.")
    col = by_name[column]
    if col.transforms:
        raise _fail(where, f"the label column {column!r} cannot also have transforms.")
    positive = raw.get("positive")
    if kind == "regression" and col.type not in _NUMERIC:
        raise _fail(where, "a regression label must be a float or int column.")
    if col.type == "timestamp":
        raise _fail(where, "a label cannot be a timestamp column.")
    if col.type == "bool" and kind != "binary":
        raise _fail(where, "a bool label column makes a binary label; use kind: binary.")
    if kind == "binary" and col.type == "string" and positive is None:
        raise _fail(
            where, "a binary label in a string column needs 'positive': the value meaning 1."
        )
    if kind == "binary" and col.type == "float":
        raise _fail(where, "a binary label must be an int (0/1) or string column.")
    if kind == "multiclass" and col.type == "float":
        raise _fail(where, "a multiclass label must be an int (class ids 0..K-1) or string column.")
    if positive is not None and (kind != "binary" or col.type != "string"):
        raise _fail(where, "'positive' applies only to a binary label in a string column.")
    if positive is not None and not isinstance(positive, str):
        raise _fail(where, f"'positive' must be a string; got {positive!r}.")
    return Label(column=column, kind=kind, positive=positive)


def _parse_cross(raw: Any, where: str, by_name: Mapping[str, Column]) -> Cross:
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a mapping {columns: [A, B], hash_buckets: N}.")
    _check_keys(raw, ["columns", "hash_buckets", "name"], where)
    cols = raw.get("columns")
    if not isinstance(cols, list) or len(cols) < 2:
        raise _fail(where, f"'columns' must list at least two columns; got {cols!r}.")
    for c in cols:
        if c not in by_name:
            raise _fail(where, f"column {c!r} is not declared (declared: {sorted(by_name)}).")
        if by_name[c].type == "float":
            raise _fail(where, f"column {c!r} is float; cross only string or int columns.")
    buckets = raw.get("hash_buckets")
    if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
        raise _fail(where, f"'hash_buckets' must be a positive integer; got {buckets!r}.")
    output = raw.get("name") or "_x_".join(cols)
    if not _NAME_RE.match(output):
        raise _fail(where, f"'name' must be an identifier; got {output!r}.")
    return Cross(columns=tuple(cols), hash_buckets=buckets, output=output)
