"""Parsing and validating a feature spec: a YAML/JSON mapping -> the fields
of a `FeatureSpec` (its columns, label, key, crosses and input format).

Every error is a SpecError that names where in the spec it is (``spec.yaml:
column 'age', field 'missing'``), what was received and what is allowed.
Nothing is defaulted silently except the documented defaults (``missing:
reject``, the default null markers, each transform's default options).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from typing import Any, Mapping, Optional, Sequence

from featurebridge.transforms.errors import SpecError, excerpt
from featurebridge.transforms.input_format import InputFormat
from featurebridge.transforms.spec_limits import (
    SpecLimits, active_limits, check_chars, check_count, check_float, check_strings, check_total,
    check_transform_options, excerpt_list,
)
from featurebridge.transforms.spec_parts import Column, Cross, Label, MissingPolicy, Transform, output_names
from featurebridge.transforms.ops import OPS, TRANSFORM_TYPES
from featurebridge.transforms.spec_tables import COLUMN_TYPES, LABEL_KINDS, MISSING_POLICIES, NUMBER, NUMERIC_TYPES, REQUIRED, TIMESTAMP_PATTERN

__all__ = ["parse_spec_fields", "safe_name"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIMESTAMP_RE = re.compile(f"^(?:{TIMESTAMP_PATTERN})$")
_BOOL_CONSTANTS = {True: 1, False: 0}


def safe_name(text: str) -> str:
    """An identifier for a header name: runs of other characters become one
    underscore (``petal width (cm)`` -> ``petal_width_cm``)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "column"
    return name if not name[0].isdigit() else f"c_{name}"


def _fail(where: str, msg: str) -> SpecError:
    if len(where) > 300:  # a long file name: keep its start and end
        where = f"{where[:150]}…{where[-150:]}"
    return SpecError(f"{where}: {msg}")


def _sorted(keys) -> list:
    """Mapping keys in order, whatever their types (YAML keys may be numbers)."""
    return sorted(keys, key=lambda k: (type(k).__name__, str(k)[:200]))


def _check_keys(obj: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = _sorted(set(obj) - set(allowed))
    if unknown:
        raise _fail(where, f"unknown field(s) {excerpt_list(unknown)}; allowed fields are {sorted(allowed)}.")


def parse_spec_fields(data: Any, source: str, limits: Optional[SpecLimits] = None) -> dict:
    """Validates a parsed spec mapping (`source` names it in errors) within
    `limits` (None: `active_limits()`; its depth and nodes are checked by the caller).

    Returns:
      The keyword arguments of a `FeatureSpec`: columns, label, key, crosses,
      source and input. A spec needs at least one column and at least one
      transform or cross; label, key and crosses may be absent.

    Raises:
      SpecError: naming the column and field that is wrong and what is allowed.
    """
    if not isinstance(data, Mapping):
        raise _fail(source, f"a spec must be a mapping with a 'columns' list; got {type(data).__name__}.")
    limits = active_limits() if limits is None else limits
    _check_keys(data, ["version", "input", "columns", "label", "key", "crosses"], source)
    input_format = _parse_input(data.get("input"), f"{source}: input", limits)
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise _fail(source, "'columns' must be a non-empty list of column entries.")
    check_count(raw_columns, "columns", source, "columns", limits)
    raw_crosses = data.get("crosses") or []
    if not isinstance(raw_crosses, list):
        raise _fail(source, "'crosses' must be a list of cross entries.")
    check_count(raw_crosses, "crosses", source, "crosses", limits)
    label_name = None
    if data.get("label") is not None:
        raw_label = data["label"]
        if isinstance(raw_label, str):
            raise _fail(f"{source}: label", "must be a mapping like {column: NAME, kind: binary|multiclass|regression}.")
        label_name = raw_label.get("column") if isinstance(raw_label, Mapping) else None
    key_name = data.get("key")

    columns = []
    by_name, by_source, total = {}, {}, 0
    for i, raw in enumerate(raw_columns):
        col = _parse_column(raw, f"{source}: columns[{i}]", label_name, key_name, input_format, limits)
        if col.name in by_name:
            raise _fail(f"{source}: column {col.name!r}", "is declared twice.")
        by_name[col.name] = col
        if col.source in by_source:
            raise _fail(
                f"{source}: column {col.name!r}",
                f"reads file column {excerpt(col.source)}, which column {by_source[col.source]!r} "
                "already reads; declare each file column once.",
            )
        by_source[col.source] = col.name
        columns.append(col)
        total += len(col.transforms)
        check_total(total, "transforms", f"{source}: column {col.name!r}", limits)
    if input_format.column_names:
        listed = set(input_format.column_names)
        unnamed = [c.source for c in columns if c.source not in listed]
        if unnamed:
            raise _fail(
                f"{source}: input, field 'column_names'",
                f"does not list the spec column(s) {excerpt_list(unnamed)}; list every file column in order.",
            )

    label = None
    if data.get("label") is not None:
        label = _parse_label(data["label"], f"{source}: label", by_name, limits)
    if key_name is not None:
        if not isinstance(key_name, str) or key_name not in by_name:
            raise _fail(
                f"{source}: key",
                f"{excerpt(key_name)} is not a declared column; declare it under 'columns' "
                f"(declared: {excerpt_list(sorted(by_name))}).",
            )
        if by_name[key_name].transforms:
            raise _fail(f"{source}: key", f"the key column {key_name!r} cannot have transforms.")

    crosses = []
    for i, raw in enumerate(raw_crosses):
        crosses.append(_parse_cross(raw, f"{source}: crosses[{i}]", by_name, limits))

    counts = collections.Counter(output_names(columns, crosses, label))
    dupes = sorted(n for n, count in counts.items() if count > 1)
    if dupes:
        raise _fail(
            source,
            f"transformed feature name(s) {excerpt_list(dupes)} are produced twice; give one of "
            "the transforms a distinct 'name'.",
        )
    if not any(c.transforms for c in columns) and not crosses:
        raise _fail(source, "no column has transforms, so there would be no features.")
    return {
        "columns": tuple(columns),
        "label": label,
        "key": key_name,
        "crosses": tuple(crosses),
        "source": source,
        "input": input_format,
    }


def _parse_input(raw: Any, where: str, limits: SpecLimits) -> InputFormat:
    if raw is None:
        return InputFormat()
    if not isinstance(raw, Mapping):
        raise _fail(where, f"must be a mapping of input options; got {excerpt(raw)}.")
    allowed = [f.name for f in dataclasses.fields(InputFormat)]
    _check_keys(raw, allowed, where)
    values = {}
    for field in ("delimiter", "quote"):
        if field in raw:
            v = raw[field]
            if not isinstance(v, str) or len(v) != 1 or v in "\r\n":
                raise _fail(where, f"field {field!r} must be one character; got {excerpt(v)}.")
            values[field] = v
    for field in ("header", "skip_initial_space"):
        if field in raw:
            if not isinstance(raw[field], bool):
                raise _fail(where, f"field {field!r} must be true or false; got {excerpt(raw[field])}.")
            values[field] = raw[field]
    if "column_names" in raw:
        names = raw["column_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _fail(where, f"field 'column_names' must be a list of strings; got {excerpt(names)}.")
        check_strings(names, "columns", "source_chars", where, "column_names", limits)
        twice = sorted(n for n, count in collections.Counter(names).items() if count > 1)
        if twice:
            raise _fail(where, f"field 'column_names' names a column twice: {excerpt_list(twice)}.")
        values["column_names"] = tuple(names)
    if values.get("header", True) and "column_names" in values:
        raise _fail(where, "give 'column_names' only with 'header: false' (a header row names the columns).")
    if values.get("header", True) is False and "column_names" not in values:
        raise _fail(where, "'header: false' needs 'column_names': the file's columns in order.")
    if "encoding" in raw:
        import codecs

        check_chars(raw["encoding"], "name_chars", where, "encoding", limits)
        try:
            values["encoding"] = codecs.lookup(str(raw["encoding"])).name
        except LookupError:
            raise _fail(where, f"field 'encoding' {excerpt(raw['encoding'])} is not a known text encoding (e.g. utf-8, latin-1, cp1252).") from None
    if "null_markers" in raw:
        values["null_markers"] = _parse_markers(raw["null_markers"], where, limits)
    return InputFormat(**values)


def _parse_markers(raw: Any, where: str, limits: SpecLimits) -> tuple:
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise _fail(f"{where}, field 'null_markers'", f"must be a list of strings (use [] for none); got {excerpt(raw)}.")
    check_strings(raw, "null_markers", "null_marker_chars", where, "null_markers", limits)
    return tuple(m.strip() for m in raw if m.strip())


def _parse_column(raw: Any, where: str, label_name, key_name, input_format: InputFormat, limits: SpecLimits) -> Column:
    if not isinstance(raw, Mapping):
        raise _fail(where, f"a column must be a mapping with 'name' and 'type'; got {excerpt(raw)}.")
    _check_keys(raw, ["name", "type", "missing", "transforms", "source", "null_markers"], where)
    name = raw.get("name")
    source_name = raw.get("source")
    if source_name is not None and (not isinstance(source_name, str) or not source_name):
        raise _fail(where, f"'source' must be the column's name in the file header; got {excerpt(source_name)}.")
    check_chars(source_name, "source_chars", where, "source", limits)
    check_chars(name, "name_chars", where, "name", limits)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        hint = ""
        if isinstance(name, str) and name:
            hint = (
                f" To read a file column named {excerpt(name, 130)}, write "
                f"`name: {safe_name(name)}` and `source: {json.dumps(name)}`."
            )
        raise _fail(where, f"'name' must be an identifier (letters, digits, underscore); got {excerpt(name, 130)}.{hint}")
    where = f"{where.split(':')[0]}: column {name!r}"
    markers = input_format.null_markers
    if "null_markers" in raw:
        markers = _parse_markers(raw["null_markers"], where, limits)
    ctype = raw.get("type")
    if ctype not in COLUMN_TYPES:
        raise _fail(where, f"field 'type' is {excerpt(ctype)}; allowed: {list(COLUMN_TYPES)}.")
    missing = _parse_missing(raw.get("missing", "reject"), ctype, f"{where}, field 'missing'", limits)
    if name in (label_name, key_name) and missing.policy != "reject":
        raise _fail(f"{where}, field 'missing'", "the label and key columns cannot be filled; use 'reject' (the default).")
    raw_transforms = raw.get("transforms") or []
    if not isinstance(raw_transforms, list):
        raise _fail(where, "field 'transforms' must be a list.")
    check_count(raw_transforms, "transforms_per_column", where, "transforms", limits)
    transforms = tuple(
        _parse_transform(t, ctype, name, f"{where}, transforms[{j}]", limits) for j, t in enumerate(raw_transforms))
    return Column(name=name, type=ctype, missing=missing, transforms=transforms, source=source_name or name,
                  null_markers=markers)


def _parse_missing(raw: Any, ctype: str, where: str, limits: SpecLimits) -> MissingPolicy:
    if isinstance(raw, Mapping):
        if set(raw) != {"constant"}:
            raise _fail(
                where,
                f"a mapping must be {{constant: VALUE}}; got keys {excerpt_list(_sorted(raw))}. "
                f"Or use one of {[p for p in MISSING_POLICIES if p != 'constant']}.",
            )
        value = raw["constant"]
        check_chars(value, "string_chars", where, "constant", limits)
        check_float(value, where, "constant")
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
            raise _fail(where, f"constant {excerpt(value)} is not a valid {ctype} value.{hint}")
        if ctype == "bool":
            return MissingPolicy("constant", _BOOL_CONSTANTS[value])
        return MissingPolicy("constant", float(value) if ctype == "float" else value)
    if raw not in MISSING_POLICIES or raw == "constant":
        raise _fail(where, f"got {excerpt(raw)}; allowed: 'mean', 'median', 'most_frequent', 'reject' or {{constant: VALUE}}.")
    if raw in ("mean", "median") and ctype not in NUMERIC_TYPES:
        raise _fail(where, f"{raw!r} needs a float or int column; this one is {ctype}.")
    return MissingPolicy(raw)


def _parse_transform(raw: Any, ctype: str, column: str, where: str, limits: SpecLimits) -> Transform:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping) or "type" not in raw:
        raise _fail(where, f"a transform is a name or a mapping with 'type'; got {excerpt(raw)}.")
    ttype = raw["type"]
    if not isinstance(ttype, str) or ttype not in TRANSFORM_TYPES:
        raise _fail(where, f"transform type {excerpt(ttype)} is unknown; allowed: {sorted(TRANSFORM_TYPES)}.")
    where = f"{where} ({ttype})"
    allowed_types, option_specs = TRANSFORM_TYPES[ttype]
    if ctype not in allowed_types:
        raise _fail(where, f"applies to {list(allowed_types)} columns; this column is {ctype}.")
    _check_keys(raw, ["type", "name", *option_specs], where)
    options = {}
    for opt, (types, default) in option_specs.items():
        if opt not in raw or (raw[opt] is None and default is None):
            if default is REQUIRED:
                raise _fail(where, f"field {opt!r} is required.")
            options[opt] = default
            continue
        value = raw[opt]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _fail(where, f"field {opt!r} must be {_type_words(types)}; got {excerpt(value)}.")
        options[opt] = value
    _check_transform_options(ttype, options, where)
    check_transform_options(options, where, limits)
    check_chars(raw.get("name"), "name_chars", where, "name", limits)
    output = raw.get("name") or f"{column}_{ttype}"
    if not isinstance(output, str) or not _NAME_RE.match(output):
        raise _fail(where, f"field 'name' must be an identifier; got {excerpt(output)}.")
    return Transform(type=ttype, output=output, options=options)


def _type_words(types) -> str:
    if types is NUMBER:
        return "a number"
    return {int: "an integer", str: "a string", list: "a list"}.get(types, str(types))


def _check_transform_options(ttype: str, o: dict, where: str) -> None:
    """The op's own checks beyond option types (featurebridge.transforms.ops)."""
    problem = OPS[ttype].check_options(o)
    if problem:
        raise _fail(where, problem)


def _parse_label(raw: Any, where: str, by_name: Mapping[str, Column], limits: SpecLimits) -> Label:
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a mapping {column: NAME, kind: binary|multiclass|regression}.")
    _check_keys(raw, ["column", "kind", "positive"], where)
    column, kind = raw.get("column"), raw.get("kind")
    if not isinstance(column, str) or column not in by_name:
        raise _fail(
            where,
            f"column {excerpt(column)} is not declared under 'columns' (declared: {excerpt_list(sorted(by_name))}).",
        )
    if kind not in LABEL_KINDS:
        raise _fail(where, f"field 'kind' is {excerpt(kind)}; allowed: {list(LABEL_KINDS)}.")
    col = by_name[column]
    if col.transforms:
        raise _fail(where, f"the label column {column!r} cannot also have transforms.")
    positive = raw.get("positive")
    check_chars(positive, "string_chars", where, "positive", limits)
    if kind == "regression" and col.type not in NUMERIC_TYPES:
        raise _fail(where, "a regression label must be a float or int column.")
    if col.type == "timestamp":
        raise _fail(where, "a label cannot be a timestamp column.")
    if col.type == "bool" and kind != "binary":
        raise _fail(where, "a bool label column makes a binary label; use kind: binary.")
    if kind == "binary" and col.type == "string" and positive is None:
        raise _fail(where, "a binary label in a string column needs 'positive': the value meaning 1.")
    if kind == "binary" and col.type == "float":
        raise _fail(where, "a binary label must be an int (0/1) or string column.")
    if kind == "multiclass" and col.type == "float":
        raise _fail(where, "a multiclass label must be an int (class ids 0..K-1) or string column.")
    if positive is not None and (kind != "binary" or col.type != "string"):
        raise _fail(where, "'positive' applies only to a binary label in a string column.")
    if positive is not None and not isinstance(positive, str):
        raise _fail(where, f"'positive' must be a string; got {excerpt(positive)}.")
    return Label(column=column, kind=kind, positive=positive)


def _parse_cross(raw: Any, where: str, by_name: Mapping[str, Column], limits: SpecLimits) -> Cross:
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a mapping {columns: [A, B], hash_buckets: N}.")
    _check_keys(raw, ["columns", "hash_buckets", "name"], where)
    cols = raw.get("columns")
    if not isinstance(cols, list) or len(cols) < 2:
        raise _fail(where, f"'columns' must list at least two columns; got {excerpt(cols)}.")
    check_count(cols, "cross_columns", where, "columns", limits)
    for c in cols:
        if not isinstance(c, str) or c not in by_name:
            raise _fail(where, f"column {excerpt(c)} is not declared (declared: {excerpt_list(sorted(by_name))}).")
        if by_name[c].type == "float":
            raise _fail(where, f"column {c!r} is float; cross only string or int columns.")
    buckets = raw.get("hash_buckets")
    if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
        raise _fail(where, f"'hash_buckets' must be a positive integer; got {excerpt(buckets)}.")
    check_transform_options({"hash_buckets": buckets}, where, limits)
    check_chars(raw.get("name"), "name_chars", where, "name", limits)
    output = raw.get("name") or "_x_".join(cols)
    if not isinstance(output, str) or not _NAME_RE.match(output):
        raise _fail(where, f"'name' must be an identifier; got {excerpt(output)}.")
    return Cross(columns=tuple(cols), hash_buckets=buckets, output=output)
