"""Readers: raw files (CSV, Parquet, TFRecord of tf.Example, JSON lines) to
Arrow RecordBatches in the layout TFT's TensorAdapter expects, with every
unusable row sent to a rejected output together with its reason.

Each raw column becomes a ``large_list<T>`` column: one value for a present
cell, an empty list for a missing one (the missing-value policy then fills it
inside the TF graph, where serving applies the same rule). Missing means: an
absent value, a null, a float NaN, an empty or blank cell, or one of the
column's null markers (``NA``, ``N/A``, ``null``, ``None``... by default; see
featurebridge.transforms.spec), the same rule `preprocessing.drop_missing` applies in the
graph. Rows are never dropped silently: a row is either in a batch or in the
rejected output, and per-file statistics let the caller check
``read == used + rejected``. Blank lines of CSV and JSON lines files are not
rows (as pandas reads them), so row numbers count records, not lines.

Columns are read by their file name (`Column.source`, e.g. ``petal width (cm)``)
and come out under their spec name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.errors import InputError
from featurebridge.transforms.spec import BOOL_SPELLINGS, TIMESTAMP_PATTERN, Column, FeatureSpec, InputFormat

__all__ = [
    "FORMATS",
    "InputError",
    "ReadRawData",
    "ReadResult",
    "RejectedRow",
    "SOURCE_COLUMN",
    "ROW_COLUMN",
    "arrow_schema_for",
    "check_headers",
    "infer_format",
    "match_files",
    "read_file",
    "read_header",
    "table_to_batch",
]

_LOG = logging.getLogger(__name__)

FORMATS = ("csv", "parquet", "tfrecord", "jsonl")
_EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
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


def infer_format(path: str) -> str:
    """Guesses the format from a file name (ignoring a trailing .gz).

    Raises:
      InputError: if the extension is not one we know.
    """
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower()
    if ext not in _EXTENSIONS:
        raise InputError(
            f"Cannot tell the format of {path!r} from its extension {ext!r}. "
            f"Pass --format with one of {list(FORMATS)}."
        )
    return _EXTENSIONS[ext]


def match_files(patterns: str | Sequence[str]) -> List[str]:
    """Expands comma-separated glob patterns to a sorted list of files. A
    local pattern is relative to the current directory (``name-*.csv``).

    Raises:
      InputError: if a pattern matches nothing.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    files: List[str] = []
    for pattern in patterns:
        given = pattern = pattern.strip()
        if "://" not in pattern:
            pattern = os.path.abspath(os.path.expanduser(pattern))
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # Beam raises different types per filesystem.
            matched = []
        paths = sorted(m.path for m in matched if not m.path.endswith("/"))
        if not paths:
            raise InputError(
                f"No input files match {given!r}"
                + (f" (looked for {pattern!r})" if pattern != given else "")
                + ". Check the path and the glob (quote it so your shell does not expand it)."
            )
        files.extend(paths)
    return sorted(set(files))


# ---------------------------------------------------------------------------
# Raw chunks: every format first becomes (table of spec columns as strings or
# native types, 1-based row numbers, rejected rows found while parsing).

_RawChunk = Tuple[pa.Table, np.ndarray, List[RejectedRow]]


def _missing_columns_error(path: str, available: Sequence[str], missing: Sequence[str], more: str = "") -> InputError:
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


def _require_columns(path: str, available: Iterable[str], wanted: Sequence[str]) -> None:
    available = list(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise _missing_columns_error(path, available, missing)


def _csv_parse_options(fmt: InputFormat, on_invalid=None):
    import pyarrow.csv as pacsv

    return pacsv.ParseOptions(
        delimiter=fmt.delimiter, quote_char=fmt.quote, invalid_row_handler=on_invalid
    )


def read_header(path: str, file_format: Optional[str] = None, input_format: InputFormat = InputFormat()) -> Optional[List[str]]:
    """The column names a file offers: a CSV's header row (or the spec's
    `column_names`), a Parquet file's schema; None for JSON lines and TFRecord,
    whose records name their own fields.

    Raises:
      InputError: the file cannot be opened or parsed as its format.
    """
    fmt = file_format or infer_format(path)
    try:
        if fmt == "csv":
            if not input_format.header:
                return list(input_format.column_names)
            import pyarrow.csv as pacsv

            with FileSystems.open(path, compression_type=_compression(path)) as stream:
                try:
                    reader = pacsv.open_csv(
                        stream,
                        read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 20, encoding=input_format.encoding),
                        parse_options=_csv_parse_options(input_format, lambda row: "skip"),
                    )
                except pa.ArrowInvalid as e:
                    if "Empty CSV file" in str(e):
                        return []
                    raise
                return list(reader.schema.names)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with FileSystems.open(path, compression_type="uncompressed") as f:
                return list(pq.ParquetFile(f).schema_arrow.names)
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as e:
        raise InputError(f"{path}: cannot be read as {fmt}: {e}. Check --format and the file.") from None
    return None


def check_headers(files: Sequence[str], spec: FeatureSpec, file_format: Optional[str] = None) -> None:
    """Checks, before a pipeline starts, that every CSV and Parquet file has
    the spec's columns; one error lists each file that lacks some.

    Raises:
      InputError: naming the files, the missing columns and what the files have.
    """
    problems = []
    for path in files:
        header = read_header(path, file_format, spec.input)
        if header is None:
            continue
        missing = [c for c in spec.source_names if c not in header]
        if missing:
            problems.append((path, missing, header))
    if not problems:
        return
    path, missing, header = problems[0]
    more = f" (and {len(problems) - 1} more file(s) like it: {[p for p, _, _ in problems[1:4]]})" if len(problems) > 1 else ""
    raise _missing_columns_error(path, header, missing, more)


def _csv_chunks(path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat = InputFormat()) -> Iterator[_RawChunk]:
    import pyarrow.csv as pacsv

    bad: List[RejectedRow] = []

    def on_invalid(row) -> str:
        if not (row.text or "").strip():
            return "skip"  # a blank line is not a row (pandas skips it too)
        data_row = (row.number - 1) if row.number is not None else -1
        bad.append(
            RejectedRow(
                path,
                data_row,
                None,
                (row.text or "")[:200],
                f"row has {row.actual_columns} fields, the header has {row.expected_columns}",
                "wrong number of fields",
            )
        )
        return "skip"

    _require_columns(path, read_header(path, "csv", fmt) or [], columns)
    stream = FileSystems.open(path, compression_type=_compression(path))
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(
            use_threads=False,
            block_size=1 << 22,
            encoding=fmt.encoding,
            column_names=list(fmt.column_names) if not fmt.header else None,
        ),
        parse_options=_csv_parse_options(fmt, on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            include_columns=list(columns),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    seen_valid = 0
    invalid_rows: List[int] = []
    try:
        for batch in reader:
            new_bad, bad[:] = list(bad), []
            invalid_rows.extend(r.row for r in new_bad)
            invalid_rows.sort()
            rows = _rows_skipping(seen_valid, batch.num_rows, invalid_rows)
            seen_valid += batch.num_rows
            table = pa.Table.from_batches([batch])
            for start in range(0, max(table.num_rows, 1), batch_size):
                part = table.slice(start, batch_size)
                yield part, rows[start : start + batch_size], new_bad if start == 0 else []
        if bad:
            yield pa.table({c: pa.array([], pa.string()) for c in columns}), np.array([], np.int64), list(bad)
    finally:
        stream.close()


def _rows_skipping(first_valid: int, count: int, invalid_sorted: Sequence[int]) -> np.ndarray:
    """1-based data row numbers of valid rows, given the invalid rows' numbers."""
    valid_idx = np.arange(first_valid, first_valid + count, dtype=np.int64)
    rows = valid_idx + 1
    invalid = np.asarray(invalid_sorted, dtype=np.int64)
    if invalid.size == 0:
        return rows
    while True:
        adjusted = valid_idx + 1 + np.searchsorted(invalid, rows, side="right")
        if np.array_equal(adjusted, rows):
            return rows
        rows = adjusted


def _parquet_chunks(path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat = InputFormat()) -> Iterator[_RawChunk]:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as f:
        pf = pq.ParquetFile(f)
        _require_columns(path, pf.schema_arrow.names, columns)
        start = 1
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            yield pa.Table.from_batches([batch]), np.arange(start, start + batch.num_rows), []
            start += batch.num_rows


def _record_chunks(
    records: Iterator[Tuple[int, object]], columns: Sequence[str], batch_size: int
) -> Iterator[_RawChunk]:
    """Batches a stream of (row number, {column: text or None} | RejectedRow)."""

    def flush(good, rows, bad):
        table = pa.table({c: pa.array([r.get(c) for r in good], pa.string()) for c in columns})
        return table, np.asarray(rows, dtype=np.int64), bad

    good, rows, bad = [], [], []
    for number, record in records:
        if isinstance(record, RejectedRow):
            bad.append(record)
            continue
        good.append(record)
        rows.append(number)
        if len(good) >= batch_size:
            yield flush(good, rows, bad)
            good, rows, bad = [], [], []
    if good or bad:
        yield flush(good, rows, bad)


def _jsonl_records(path: str, columns: Sequence[str], encoding: str = "utf-8") -> Iterator[Tuple[int, object]]:
    with FileSystems.open(path, compression_type=_compression(path)) as f:
        for number, line in enumerate(f, start=1):
            text = line.decode(encoding, errors="replace").strip()
            if not text:
                continue  # a blank line is not a record; numbers stay line numbers
            try:
                obj = json.loads(text)
            except ValueError as e:
                yield number, RejectedRow(path, number, None, text[:200], f"not valid JSON: {e}", "not valid JSON")
                continue
            if not isinstance(obj, dict):
                yield number, RejectedRow(path, number, None, text[:200], "a JSON line must be an object", "not a JSON object")
                continue
            record: dict = {}
            for c in columns:
                v = obj.get(c)
                if isinstance(v, (dict, list)):
                    record = RejectedRow(path, number, c, json.dumps(v)[:200], "nested values are not supported", "nested value")
                    break
                record[c] = None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
            yield number, record


def _tfrecord_records(path: str, columns: Sequence[str]) -> Iterator[Tuple[int, object]]:
    import tensorflow as tf  # Imported here: the other formats do not need TF.

    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
    iterator = iter(dataset)
    number = 0
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except tf.errors.DataLossError as e:
            yield number + 1, RejectedRow(
                path, number + 1, None, None, f"corrupt TFRecord, rest of file unreadable: {e.message}",
                "corrupt TFRecord",
            )
            return
        number += 1
        try:
            example = tf.train.Example.FromString(raw.numpy())
        except Exception:  # protobuf raises DecodeError; keep the row, say why.
            yield number, RejectedRow(path, number, None, None, "record is not a tf.train.Example", "not a tf.Example")
            continue
        record: dict = {}
        for c in columns:
            feature = example.features.feature.get(c)
            kind = feature.WhichOneof("kind") if feature is not None else None
            values = list(getattr(feature, kind).value) if kind else []
            if len(values) > 1:
                record = RejectedRow(path, number, c, str(values[:5]), f"expected one value, got {len(values)}", "several values")
                break
            if not values:
                record[c] = None
            else:
                v = values[0]
                record[c] = v.decode("utf-8", errors="replace") if isinstance(v, bytes) else repr(v)
        yield number, record


# Each chunker: (path, file column names, batch size, InputFormat) -> raw chunks
# whose columns carry the file's names, in the order given.
_CHUNKERS = {
    "csv": _csv_chunks,
    "parquet": _parquet_chunks,
    "jsonl": lambda path, columns, size, fmt: _record_chunks(_jsonl_records(path, columns, fmt.encoding), columns, size),
    "tfrecord": lambda path, columns, size, fmt: _record_chunks(_tfrecord_records(path, columns), columns, size),
}


def _compression(path: str) -> str:
    return "gzip" if path.endswith(".gz") else "uncompressed"


# ---------------------------------------------------------------------------
# Validation and conversion of one chunk, column by column, vectorised.


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
            values = arr.cast(pa.float64())
        elif target == "bool":
            values, errors = _ints_from_numbers(arr)
            ids = values.to_numpy(zero_copy_only=False)
            bad = values.is_valid().to_numpy(zero_copy_only=False) & (ids != 0) & (ids != 1)
            errors += [(int(i), "not a valid bool", "not a bool") for i in np.flatnonzero(bad)]
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


def _parse_numbers(text: pa.Array, target: str) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    arrow_type = pa.float64() if target == "float" else pa.int64()
    try:
        return text.cast(arrow_type), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Slow path, only for chunks holding a bad value: find which cells.
    out, errors = [], []
    for i, v in enumerate(text.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            if target == "float":
                out.append(float(v))
            else:
                f = float(v)
                if not f.is_integer():
                    raise ValueError
                out.append(int(f))
        except (ValueError, OverflowError):
            out.append(None)
            errors.append((i, f"not a valid {target}", "not a float" if target == "float" else "not an int"))
    return pa.array(out, arrow_type), errors


def _ints_from_numbers(arr: pa.Array) -> Tuple[pa.Array, List[Tuple[int, str, str]]]:
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.int64()), []
    floats = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad = valid & ~(np.isfinite(floats) & (np.floor(floats) == floats))
    errors = [(int(i), "not a valid int", "not an int") for i in np.flatnonzero(bad)]
    ints = np.where(valid & ~bad, floats, 0).astype(np.int64)
    return pa.array(ints, pa.int64(), mask=~valid | bad), errors


def _bad_class_ids(values: pa.Array, present: np.ndarray, kind: str) -> List[Tuple[int, str, str]]:
    """Rows whose int label is no class id: a binary label is 0 or 1, a
    multiclass one 0..K-1 (the model has max+1 classes)."""
    ids = values.to_numpy(zero_copy_only=False)
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


def _chunk_to_batch(
    path: str,
    table: pa.Table,
    rows: np.ndarray,
    spec: FeatureSpec,
    include_position: bool,
) -> Tuple[Optional[pa.RecordBatch], List[RejectedRow]]:
    """Validates and converts a chunk whose columns carry the spec's names.
    A row with several bad cells is rejected once, listing every one."""
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
        if any(t.type == "log1p" for t in column.transforms):
            np_vals = values.to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                low = present & (np_vals <= -1)
            for i in np.flatnonzero(low):
                reasons.setdefault(int(i), ("log1p needs values greater than -1", "log1p domain"))
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
    _require_columns(source, table.column_names, spec.column_names)
    if table.num_rows == 0:
        return None, []
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    return _chunk_to_batch(source, table.select(list(spec.column_names)), rows, spec, include_position)


def read_file(
    path: str,
    spec: FeatureSpec,
    file_format: Optional[str] = None,
    batch_size: int = 10_000,
    include_position: bool = False,
) -> Iterator[Tuple[str, object]]:
    """Reads one file, yielding ("batch", RecordBatch), ("rejected", RejectedRow)
    and finally ("stats", {"source", "read", "used", "rejected", "present",
    "rejected_by"}), where "present" counts, per spec column, the used rows
    that had a value, and "rejected_by" counts the rejected rows' problems by
    "column: reason" (a row with two bad cells counts under both).

    An empty file yields only its stats (all zero).

    Raises:
      InputError: the file lacks a spec column or cannot be parsed at all.
    """
    fmt = file_format or infer_format(path)
    columns = spec.column_names
    sources = spec.source_names
    read = used = rejected = 0
    present = dict.fromkeys(columns, 0)
    rejected_by: Dict[str, int] = {}
    try:
        for table, rows, bad in _CHUNKERS[fmt](path, sources, batch_size, spec.input):
            table = table.rename_columns(list(columns))
            for r in bad:
                yield "rejected", r
            batch, more_bad = _chunk_to_batch(path, table, rows, spec, include_position) if table.num_rows else (None, [])
            for r in more_bad:
                yield "rejected", r
            for r in (*bad, *more_bad):
                for problem in r.problems():
                    rejected_by[problem] = rejected_by.get(problem, 0) + 1
            read += table.num_rows + len(bad)
            rejected += len(bad) + len(more_bad)
            if batch is not None:
                used += batch.num_rows
                count_present(batch, present)
                yield "batch", batch
    except InputError:
        raise
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as e:
        raise InputError(f"{path}: cannot be read as {fmt}: {e}. Check --format and the file.") from None
    yield "stats", {
        "source": path, "read": read, "used": used, "rejected": rejected,
        "present": present, "rejected_by": dict(sorted(rejected_by.items())),
    }


def count_present(batch: pa.RecordBatch, present: Dict[str, int]) -> Dict[str, int]:
    """Adds, per column in `present`, the used rows of `batch` that have a value
    (the rest were missing and get the column's fill). Returns `present`."""
    for name in present:
        present[name] += int(pc.sum(pc.list_value_length(batch.column(name))).as_py() or 0)
    return present


_PROGRESS_EVERY = 500_000


class _ReadFileDoFn(beam.DoFn):
    def __init__(self, spec_json: str, file_format: Optional[str], batch_size: int, include_position: bool):
        self._spec_json = spec_json
        self._format = file_format
        self._batch_size = batch_size
        self._include_position = include_position
        self._spec = None
        self._rows_read = beam.metrics.Metrics.counter("featurebridge", "rows_read")
        self._rows_rejected = beam.metrics.Metrics.counter("featurebridge", "rows_rejected")

    def setup(self):
        self._spec = FeatureSpec.from_text(self._spec_json)

    def process(self, path: str):
        _LOG.info("Reading %s", path)
        rows, next_report = 0, _PROGRESS_EVERY
        for kind, value in read_file(path, self._spec, self._format, self._batch_size, self._include_position):
            if kind == "batch":
                rows += value.num_rows
                if rows >= next_report:
                    _LOG.info("%s: %d rows read so far", path, rows)
                    next_report += _PROGRESS_EVERY
                yield value
            elif kind == "rejected":
                self._rows_rejected.inc()
                yield beam.pvalue.TaggedOutput("rejected", value.to_json())
            else:
                self._rows_read.inc(value["read"])
                _LOG.info(
                    "%s: %d rows read, %d used, %d rejected",
                    path, value["read"], value["used"], value["rejected"],
                )
                yield beam.pvalue.TaggedOutput("stats", value)


class ReadResult(NamedTuple):
    """The outputs of `ReadRawData`.

    Attributes:
      batches: PCollection of pa.RecordBatch in `arrow_schema_for(spec)`.
      rejected: PCollection of JSON lines, one per `RejectedRow`.
      stats: PCollection of per-file dicts {source, read, used, rejected}.
    """

    batches: beam.PCollection
    rejected: beam.PCollection
    stats: beam.PCollection


class ReadRawData(beam.PTransform):
    """Reads raw files into Arrow RecordBatches plus rejected rows.

    Files are matched on the launcher, so a pattern that matches nothing fails
    before the pipeline starts; so does a CSV or Parquet file that lacks a spec
    column (`check_headers`; `check_columns=False` skips it). Each file is read
    by one worker; split large inputs into several files to read them in parallel.
    """

    def __init__(
        self,
        file_pattern: str | Sequence[str],
        spec: FeatureSpec,
        file_format: Optional[str] = None,
        batch_size: int = 10_000,
        include_position: bool = False,
        check_columns: bool = True,
    ):
        super().__init__()
        if file_format is not None and file_format not in FORMATS:
            raise InputError(f"--format {file_format!r} is not supported; use one of {list(FORMATS)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}.")
        self.files = match_files(file_pattern)
        if file_format is None:
            formats = {infer_format(p) for p in self.files}
            if len(formats) > 1:
                raise InputError(f"Input files mix formats {sorted(formats)}; pass --format or split the input.")
        if check_columns:
            # On the launcher, once: a missing column fails here, not on each worker.
            check_headers(self.files, spec, file_format)
        self._spec = spec
        self._format = file_format
        self._batch_size = batch_size
        self._include_position = include_position

    def expand(self, pbegin) -> ReadResult:
        results = (
            pbegin
            | "ListFiles" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles"
            >> beam.ParDo(
                _ReadFileDoFn(self._spec.to_json(), self._format, self._batch_size, self._include_position)
            ).with_outputs("rejected", "stats", main="batches")
        )
        return ReadResult(results.batches, results.rejected, results.stats)
