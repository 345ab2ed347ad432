"""Rows against the spec: raw cells -> typed Arrow batches, or rejected rows.

A reader (featurebridge.transforms.readers) hands over chunks of raw cells;
this module types them column by column, vectorised, with the spec's rules:

* Missing means an absent value, a null, a float NaN, an empty or blank cell,
  or one of the column's null markers (``NA``, ``N/A``, ``null``, ``None``...
  by default; see featurebridge.transforms.spec_tables), the same rule
  `preprocessing.drop_missing` applies in the graph. A missing cell becomes an
  empty list (the missing-value policy fills it inside the TF graph); under the
  ``reject`` policy its row is rejected.
* Present cells must parse as the column's type: a float (finite, within
  float32), an int, a bool (`spec_tables.BOOL_SPELLINGS`), an ISO 8601
  timestamp (`spec_tables.TIMESTAMP_PATTERN`); an int label must be a class
  id; a ``log1p`` column must be > -1.
* Values never change silently; one rule per type, whatever the chunk holds:

  - int text (trimmed) is ``^[+-]?[0-9]+(\\.0*)?$``: ASCII decimal digits, an
    optional sign, an optional all-zero fraction ("3.0", as pandas writes an
    int column with gaps). Anything else ("0x10", "1e3", "1_000", "3.5",
    non-ASCII digits) is "not a valid int". Values are exact (no float round
    trip); one outside int64 is rejected ("out of int64 range"), never clamped.
  - float text is what Arrow's string -> float64 cast accepts (it takes "1e3",
    "inf", "nan"; it refuses "0x10" and "1_000"); then the float32 checks.
  - native numbers (Parquet, cross-language rows) into an int or bool column:
    integer types are exact, a uint64 above int64's max is rejected; a float
    must be integral and within [-2**63, 2**63), else it is rejected.
    Native numbers into a float column are rounded to float64 (then float32
    in the graph), as the same value written as text would be.

Each row is either in the batch or rejected once as a `RejectedRow` listing
every bad cell with a reason and a short code (for counts). Batches hold one
``large_list<T>`` column per spec column (`arrow_schema_for`), the layout
TFT's TensorAdapter expects. An empty chunk gives no batch and no rejections.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurebridge.transforms.errors import InputError
from featurebridge.transforms.ops import reject_rules
from featurebridge.transforms.spec import FeatureSpec
from featurebridge.transforms.spec_parts import Column
from featurebridge.transforms.spec_tables import BOOL_SPELLINGS, TIMESTAMP_PATTERN

__all__ = [
    "ROW_COLUMN",
    "RejectedRow",
    "SOURCE_COLUMN",
    "arrow_schema_for",
    "chunk_to_batch",
    "count_present",
    "missing_columns_error",
    "require_columns",
    "table_to_batch",
]

# Position columns added when a caller asks for them (predict joins on these).
SOURCE_COLUMN = "__source__"
ROW_COLUMN = "__row__"

_ARROW_VALUE_TYPES = {"float": pa.float32(), "int": pa.int64(), "string": pa.large_binary()}


@dataclasses.dataclass(frozen=True)
class RejectedRow:
    """An input row that could not be used.

    Attributes:
      source: the file it came from.
      row: its 1-based record number in that file (for a CSV with a header and
        no blank lines, line = row + 1).
      column: the (first) offending column, or None when the whole row is unreadable.
      value: its raw value as text (truncated), or None.
      reason: what was wrong, in words.
      code: a short name of the reason, for counts ("missing", "not a float"...).
      more: the row's other bad columns, as (column, value, reason, code).
    """

    source: str
    row: int
    column: Optional[str]
    value: Optional[str]
    reason: str
    code: str = "unreadable row"
    more: Tuple[Tuple[str, Optional[str], str, str], ...] = ()

    def problems(self) -> List[str]:
        """"column: code" for every problem of the row ("(row): code" for the row itself)."""
        first = f"{self.column or '(row)'}: {self.code}"
        return [first] + [f"{column}: {code}" for column, _, _, code in self.more]

    def to_json(self) -> str:
        """One line of the rejected output: the fields, "more" only when set."""
        out = dataclasses.asdict(self)
        out["more"] = [
            {"column": c, "value": v, "reason": r, "code": k} for c, v, r, k in self.more
        ]
        if not out["more"]:
            del out["more"]
        return json.dumps(out, sort_keys=True)


def arrow_schema_for(spec: FeatureSpec, include_position: bool = False) -> pa.Schema:
    """The Arrow schema of the batches `ReadRawData` produces for `spec`."""
    fields = [pa.field(c.name, pa.large_list(_ARROW_VALUE_TYPES[c.storage])) for c in spec.columns]
    if include_position:
        fields += [
            pa.field(SOURCE_COLUMN, pa.large_list(pa.large_binary())),
            pa.field(ROW_COLUMN, pa.large_list(pa.int64())),
        ]
    return pa.schema(fields)


def missing_columns_error(path: str, available: Sequence[str], missing: Sequence[str], more: str = "") -> InputError:
    """The one message for spec columns a file lacks, with a `source:` hint
    when the file has the column under a spaced or differently cased name."""
    hint = ""
    for name in missing:
        close = [h for h in available if h.lower().replace(" ", "_") == name.lower()]
        if close:
            hint = f" The file has {close[0]!r}: add `source: {json.dumps(close[0])}` to spec column {name!r}."
            break
    return InputError(
        f"{path}: column(s) {list(missing)} required by the feature spec are not in the file "
        f"(its columns: {list(available)[:50]}){more}. Fix the header or the spec (a spec column "
        f"reads the file column named by its 'source', else by its 'name').{hint}"
    )


def require_columns(path: str, available: Iterable[str], wanted: Sequence[str]) -> None:
    """Checks that `available` (a file's or table's columns) has every `wanted` one.

    Raises:
      InputError: from `missing_columns_error`, naming what is missing.
    """
    available = list(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise missing_columns_error(path, available, missing)


# ---------------------------------------------------------------------------
# Conversion of one chunk, column by column, vectorised.


def _as_text(arr: pa.Array, i: int) -> Optional[str]:
    v = arr[i].as_py()
    return None if v is None else str(v)[:200]


_FLOAT32_MAX = float(np.finfo(np.float32).max)


_TIMESTAMP_FULL = f"^(?:{TIMESTAMP_PATTERN})$"


def _text_values(arr: pa.Array, column: Column, skip_initial_space: bool = False) -> Tuple[pa.Array, pa.Array]:
    """(trimmed text with missing cells as null, untrimmed text likewise) of a
    string array: empty and blank cells and the column's null markers are null.
    With `skip_initial_space` the "untrimmed" text loses its leading spaces."""
    if skip_initial_space:
        arr = pc.utf8_ltrim_whitespace(arr)
    text = pc.utf8_trim_whitespace(arr)
    missing = pc.equal(pc.utf8_length(text), 0)
    if column.null_markers:
        missing = pc.or_(missing, pc.is_in(text, value_set=pa.array(list(column.null_markers), text.type)))
    missing = pc.fill_null(missing, True)
    return pc.if_else(missing, pa.scalar(None, text.type), text), pc.if_else(missing, pa.scalar(None, arr.type), arr)


def _convert_column(
    arr: pa.ChunkedArray | pa.Array, column: Column, skip_initial_space: bool = False
) -> Tuple[pa.Array, np.ndarray, List[Tuple[int, str, str]]]:
    """Converts one raw column to the column's storage type.

    Returns:
      (values, present, errors): values has the storage's Arrow type with nulls
      where missing or bad; present marks usable cells; errors lists
      (index, reason, code) for cells that are present but invalid.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    target = column.type
    errors: List[Tuple[int, str, str]] = []
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        fmt = "%Y-%m-%d" if pa.types.is_date(arr.type) else "%Y-%m-%dT%H:%M:%S"
        arr = pc.strftime(arr, format=fmt) if target == "timestamp" else arr.cast(pa.string())
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int64()) if target in ("bool", "int", "float") else arr.cast(pa.string())
    if target == "timestamp" and not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())  # e.g. an int column: its text then fails the pattern
    if pa.types.is_string(arr.type):
        text, untrimmed = _text_values(arr, column, skip_initial_space)
        if target == "string":
            values = untrimmed.cast(pa.large_binary())  # untrimmed: strings are data
        elif target == "timestamp":
            ok = pc.fill_null(pc.match_substring_regex(text, _TIMESTAMP_FULL), True).to_numpy(zero_copy_only=False)
            errors = [
                (int(i), "not an ISO 8601 date or date-time (e.g. 2024-01-31 or 2024-01-31 08:15:00)", "not a timestamp")
                for i in np.flatnonzero(~ok)
            ]
            values = pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string())).cast(pa.large_binary())
        elif target == "bool":
            values, errors = _parse_bools(text)
        else:
            values, errors = _parse_numbers(text, target)
    else:
        if target == "string":
            values = arr.cast(pa.string()).cast(pa.large_binary())
        elif target == "float":
            # Unsafe: an int64 beyond 2**53 rounds (the graph holds float32
            # anyway), as the same number written as text does.
            values = arr.cast(pa.float64(), safe=False)
        elif target == "bool":
            values, errors = _ints_from_numbers(arr)
            ids = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
            bad = values.is_valid().to_numpy(zero_copy_only=False) & (ids != 0) & (ids != 1)
            bad[[i for i, _, _ in errors]] = True
            errors = [(int(i), "not a valid bool", "not a bool") for i in np.flatnonzero(bad)]
            values = pc.if_else(pa.array(bad), pa.scalar(None, pa.int64()), values)
        else:
            values, errors = _ints_from_numbers(arr)
    if target == "float":
        np_vals = values.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            nan = np.isnan(np_vals)
            inf = np.isinf(np_vals)
            # Features are float32 in the TF graph: a larger magnitude would become inf there.
            too_big = ~inf & (np.abs(np_vals) > _FLOAT32_MAX)
        for i in np.flatnonzero(inf):
            errors.append((int(i), "infinite value; clean or drop it upstream", "infinite"))
        for i in np.flatnonzero(too_big):
            errors.append((int(i), f"{np_vals[i]!r} is beyond float32's range (+-3.4e38), where it would become infinite; rescale or drop it upstream", "beyond float32"))
        bad = nan | inf | too_big
        values = pa.array(np.where(bad, np.nan, np_vals), pa.float64(), mask=bad | ~values.is_valid().to_numpy(zero_copy_only=False))
    present = values.is_valid().to_numpy(zero_copy_only=False).copy()
    for i, _, _ in errors:
        present[i] = False
    return values, present, errors


def _parse_bools(text: pa.Array) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    """true/false, t/f, yes/no, y/n, 1/0 in any case -> 1/0."""
    lowered = pc.utf8_lower(text)
    keys = pa.array(list(BOOL_SPELLINGS), pa.string())
    index = pc.index_in(lowered, value_set=keys)
    bits = pa.array(list(BOOL_SPELLINGS.values()), pa.int64())
    values = pc.take(bits, index)
    bad = (pc.is_null(index).to_numpy(zero_copy_only=False) & text.is_valid().to_numpy(zero_copy_only=False))
    errors = [
        (int(i), "not a valid bool (use true/false, yes/no or 1/0)", "not a bool") for i in np.flatnonzero(bad)
    ]
    return values, errors


_INT_PATTERN = r"^[+-]?[0-9]+(\.0*)?$"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Up to 18 digits (and a minus) always fit int64: those are cast in one go.
_SHORT_INT_CHARS = 18
_NOT_AN_INT = ("not a valid int (write it in decimal digits, e.g. -42 or 42.0)", "not an int")
_NOT_A_FLOAT = ("not a valid float", "not a float")


def _out_of_int64(value: object) -> Tuple[str, str]:
    """(reason, code) for an integral value int64 cannot hold."""
    text = str(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return (
        f"{text} is outside int64's range [{_INT64_MIN}, {_INT64_MAX}]; "
        "store the column as a string, or scale the values upstream",
        "out of int64 range",
    )


def _parse_numbers(text: pa.Array, target: str) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    """Parses trimmed text (null where missing) as ``target`` ("float" or "int").

    One rule per type, the same whether or not the chunk holds a bad cell:

    * int: ``^[+-]?[0-9]+(\\.0*)?$`` -- ASCII decimal digits, an optional sign
      and an optional all-zero fraction ("42", "-42", "+42", "42.0", "42.").
      Hex ("0x10"), exponents ("1e3"), underscores ("1_000"), other fractions
      ("3.5") and non-ASCII digits are "not a valid int" (code "not an int").
      Values are exact; one outside int64 [-2**63, 2**63-1] is rejected with
      code "out of int64 range".
    * float: exactly what Arrow's string -> float64 cast accepts ("1.5", "1e3",
      ".5", "inf", "nan"; not "0x10" nor "1_000"), else "not a valid float"
      (code "not a float"). NaN and infinities are dealt with by the caller.

    Returns:
      (values, errors): int64 or float64 values, null where missing or bad;
      errors lists (index, reason, code) of the bad cells. Nulls are no errors.
    """
    if target == "float":
        return _parse_floats(text)
    return _parse_ints(text)


def _parse_floats(text: pa.Array) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    """Arrow's cast decides; for a chunk it refuses, bisection finds the very
    cells it refuses (a part that casts is kept as cast), so both agree."""
    try:
        return text.cast(pa.float64()), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    pieces: List[pa.Array] = []
    bad: List[int] = []
    pending = [(0, len(text))]  # (offset, length), leftmost last: pieces stay in order
    while pending:
        offset, length = pending.pop()
        try:
            pieces.append(text.slice(offset, length).cast(pa.float64()))
            continue
        except pa.ArrowInvalid:
            pass
        if length == 1:
            bad.append(offset)
            pieces.append(pa.nulls(1, pa.float64()))
            continue
        half = length // 2
        pending += [(offset + half, length - half), (offset, half)]
    return pa.concat_arrays(pieces), [(i, *_NOT_A_FLOAT) for i in bad]


def _parse_ints(text: pa.Array) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    """Regex-checked, zero fraction and plus sign stripped, then cast; only
    cells long enough to overflow are looked at one by one (exactly)."""
    matched = pc.match_substring_regex(text, _INT_PATTERN)  # null where missing
    valid = text.is_valid().to_numpy(zero_copy_only=False)
    ok = pc.fill_null(matched, False).to_numpy(zero_copy_only=False)
    errors = [(int(i), *_NOT_AN_INT) for i in np.flatnonzero(valid & ~ok)]
    digits = pc.replace_substring_regex(text, r"\.0*$", "")
    digits = pc.replace_substring_regex(digits, r"^\+", "")
    short = ok & (pc.fill_null(pc.utf8_length(digits), 0).to_numpy(zero_copy_only=False) <= _SHORT_INT_CHARS)
    cast = pc.if_else(pa.array(short), digits, pa.scalar(None, digits.type)).cast(pa.int64())
    if not (ok & ~short).any():
        return cast, errors
    ints = pc.fill_null(cast, 0).to_numpy(zero_copy_only=False).copy()
    usable = short.copy()
    for i in np.flatnonzero(ok & ~short):
        s = digits[int(i)].as_py()
        magnitude = s.lstrip("-").lstrip("0") or "0"
        # More than 19 significant digits cannot fit; int() of them is not needed.
        value = int(magnitude) * (-1 if s.startswith("-") else 1) if len(magnitude) <= 19 else None
        if value is None or not _INT64_MIN <= value <= _INT64_MAX:
            errors.append((int(i), *_out_of_int64(text[int(i)].as_py())))
            continue
        ints[i] = value
        usable[i] = True
    errors.sort()
    return pa.array(ints, pa.int64(), mask=~usable), errors


def _ints_from_numbers(arr: pa.Array) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    """Native numbers -> exact int64, null where missing or bad.

    Integer types are exact (a uint64 above int64's max is rejected); a float
    must be integral and within [-2**63, 2**63); a decimal likewise (checked
    exactly). Nothing is clamped or rounded.

    Returns:
      (values, errors): errors lists (index, reason, code) of the bad cells.
    """
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(arr.type):
        if arr.type != pa.uint64():
            return arr.cast(pa.int64()), []
        big = pc.fill_null(pc.greater(arr, pa.scalar(_INT64_MAX, pa.uint64())), False).to_numpy(zero_copy_only=False)
        errors = [(int(i), *_out_of_int64(arr[int(i)].as_py())) for i in np.flatnonzero(big)]
        kept = pc.if_else(pa.array(big), pa.scalar(None, arr.type), arr)
        return kept.cast(pa.int64()), errors
    if pa.types.is_decimal(arr.type):
        out: List[Optional[int]] = []
        errors = []
        for i, v in enumerate(arr.to_pylist()):  # rare in practice: one by one, exactly
            if v is not None and v != v.to_integral_value():
                errors.append((i, *_NOT_AN_INT))
                v = None
            elif v is not None and not _INT64_MIN <= int(v) <= _INT64_MAX:
                errors.append((i, *_out_of_int64(v)))
                v = None
            out.append(None if v is None else int(v))
        return pa.array(out, pa.int64()), errors
    floats = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        not_int = valid & ~(np.isfinite(floats) & (np.floor(floats) == floats))
        # Both bounds are powers of two, exact in float64: 2**63 itself is out.
        outside = valid & ~not_int & ((floats < -(2.0**63)) | (floats >= 2.0**63))
    errors = [(int(i), *_NOT_AN_INT) for i in np.flatnonzero(not_int)]
    errors += [(int(i), *_out_of_int64(arr[int(i)].as_py())) for i in np.flatnonzero(outside)]
    errors.sort()
    bad = not_int | outside
    ints = np.where(valid & ~bad, floats, 0).astype(np.int64)
    return pa.array(ints, pa.int64(), mask=~valid | bad), errors


def _bad_class_ids(values: pa.Array, present: np.ndarray, kind: str) -> List[Tuple[int, str, str]]:
    """Rows whose int label is no class id: a binary label is 0 or 1, a
    multiclass one 0..K-1 (the model has max+1 classes)."""
    ids = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)  # int64: exact in the reason
    if kind == "binary":
        bad = present & (ids != 0) & (ids != 1)
        reason = "a binary label must be 0 or 1; got {}. Map it to 0/1 upstream, or declare the label multiclass."
    else:
        bad = present & (ids < 0)
        reason = "a multiclass label must be a class id 0..K-1; got {}. Map classes to ids from 0 upstream, or use a string column."
    return [(int(i), reason.format(int(ids[i])), "not a class id") for i in np.flatnonzero(bad)]


def _to_large_list(values: pa.Array, present: np.ndarray, keep: np.ndarray, value_type: pa.DataType) -> pa.Array:
    kept_present = present[keep]
    offsets = np.zeros(kept_present.size + 1, dtype=np.int64)
    np.cumsum(kept_present, out=offsets[1:])
    flat = values.filter(pa.array(present & keep)).cast(value_type)
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), flat)


def chunk_to_batch(
    path: str,
    table: pa.Table,
    rows: np.ndarray,
    spec: FeatureSpec,
    include_position: bool,
) -> Tuple[Optional[pa.RecordBatch], List[RejectedRow]]:
    """Validates and converts a chunk whose columns carry the spec's names.

    A row with several bad cells is rejected once, listing every one. `rows`
    are the chunk rows' 1-based numbers in `path`, for the rejected rows and
    the position columns.

    Returns:
      (batch, rejected): batch is in `arrow_schema_for(spec, include_position)`,
      or None when no row is usable (also for an empty chunk).
    """
    n = table.num_rows
    problems: Dict[int, List[Tuple[str, Optional[str], str, str]]] = {}
    converted = {}
    label = spec.label
    for column in spec.columns:
        raw = table.column(column.name)
        raw = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
        values, present, errors = _convert_column(raw, column, spec.input.skip_initial_space)
        reasons = {i: (r, code) for i, r, code in errors}
        if column.missing.policy == "reject":
            for i in np.flatnonzero(~present):
                reasons.setdefault(int(i), ("missing value and the spec says reject", "missing"))
        if label is not None and column.name == label.column and column.type == "int" and label.kind != "regression":
            for i, reason, code in _bad_class_ids(values, present, label.kind):
                reasons.setdefault(i, (reason, code))
        for rule in reject_rules(column):
            np_vals = values.to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                bad = present & rule.bad(np_vals)
            for i in np.flatnonzero(bad):
                reasons.setdefault(int(i), (rule.reason, rule.code))
        for i in sorted(reasons):
            reason, code = reasons[i]
            problems.setdefault(i, []).append((column.name, _as_text(raw, i), reason, code))
        converted[column.name] = (values, present)
    keep = np.ones(n, dtype=bool)
    rejected: List[RejectedRow] = []
    for i in sorted(problems):
        keep[i] = False
        (column, value, reason, code), *more = problems[i]
        rejected.append(RejectedRow(path, int(rows[i]), column, value, reason, code, tuple(more)))
    if not keep.any():
        return None, rejected
    arrays = [
        _to_large_list(values, present, keep, _ARROW_VALUE_TYPES[c.storage])
        for c, (values, present) in ((c, converted[c.name]) for c in spec.columns)
    ]
    if include_position:
        kept = int(keep.sum())
        one = np.arange(kept + 1, dtype=np.int64)
        arrays.append(pa.LargeListArray.from_arrays(pa.array(one), pa.array([path.encode()] * kept, pa.large_binary())))
        arrays.append(pa.LargeListArray.from_arrays(pa.array(one), pa.array(rows[keep].astype(np.int64))))
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema_for(spec, include_position)), rejected


def table_to_batch(
    table: pa.Table,
    spec: FeatureSpec,
    source: str = "<rows>",
    first_row: int = 1,
    include_position: bool = False,
) -> Tuple[Optional[pa.RecordBatch], List[RejectedRow]]:
    """Converts a table of raw columns to one batch, with the readers' rules.

    For callers that already hold rows in memory (the cross-language
    transforms): each spec column may hold strings (parsed as the files' text
    is) or native numbers; nulls and empty strings are missing values. Extra
    columns are ignored. Rows are numbered from `first_row` in `source`.

    Returns:
      (batch, rejected): batch is in `arrow_schema_for(spec, include_position)`
      or None when no row is usable (also for an empty table); rejected lists
      the unusable rows with reasons, exactly as `read_file` would.

    Raises:
      InputError: a spec column is missing from the table.
    """
    require_columns(source, table.column_names, spec.column_names)
    if table.num_rows == 0:
        return None, []
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    return chunk_to_batch(source, table.select(list(spec.column_names)), rows, spec, include_position)


def count_present(batch: pa.RecordBatch, present: Dict[str, int]) -> Dict[str, int]:
    """Adds, per column in `present`, the used rows of `batch` that have a value
    (the rest were missing and get the column's fill). Returns `present`."""
    for name in present:
        present[name] += int(pc.sum(pc.list_value_length(batch.column(name))).as_py() or 0)
    return present
