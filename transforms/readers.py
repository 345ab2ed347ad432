"""Format readers: raw files (CSV, Parquet, TFRecord of tf.Example, JSON lines)
to chunks of raw cells, before any typing.

Every format becomes the same "raw chunk": (a table of the requested file
columns, as text or the file's native types; the chunk rows' 1-based record
numbers; the rows the format itself could not parse, as `RejectedRow`s: a CSV
line with the wrong number of fields, a JSON line that is not an object, a
record that is not a tf.Example...). featurebridge.transforms.validation then
types the cells against the spec.

The CSV dialect, header and text encoding come from the spec's ``input:``
block (`InputFormat`). Blank lines of CSV and JSON lines files are not rows (as
pandas reads them), so row numbers count records, not lines. An empty file
gives no chunk (or one empty chunk); a file lacking a requested column raises
InputError. A trailing ``.gz`` means gzip for every format but Parquet.

Every input row is either in a chunk or rejected with its reason; a file that
cannot be read as a whole (damaged gzip or TFRecord, an ambiguous or
unusable column) is an InputError that names the file, and the column where
one is at fault, and says what to do. CSV parsing lives in
featurebridge.transforms.csv_blocks, TFRecord framing in
featurebridge.transforms.tfrecord_frames, gzip and UTF-8 checks in
featurebridge.transforms.file_bytes.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.csv_blocks import csv_chunks, csv_header
from featurebridge.transforms.errors import InputError
from featurebridge.transforms.file_bytes import NOT_UTF8, is_utf8, not_utf8_reason, open_input, utf8_columns
from featurebridge.transforms.input_format import InputFormat
from featurebridge.transforms.spec import FeatureSpec
from featurebridge.transforms.tfrecord_frames import tfrecord_records
from featurebridge.transforms.validation import RejectedRow, missing_columns_error, require_columns

__all__ = [
    "FILE_ERRORS",
    "FORMATS",
    "PARQUET_TYPES",
    "RawChunk",
    "check_headers",
    "infer_format",
    "raw_chunks",
    "read_header",
    "unreadable_error",
]

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

# A chunk of one file: (table of the requested columns, 1-based row numbers,
# rows rejected while parsing).
RawChunk = Tuple[pa.Table, np.ndarray, List[RejectedRow]]


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


# What reading a file raises when the file is at fault: pyarrow's errors
# (ArrowInvalid, ArrowNotImplementedError...; ArrowIOError is an OSError), text
# decoding, I/O, and a damaged compressed stream (zlib.error and EOFError are no
# OSErrors). `read_file` turns them into `unreadable_error`.
FILE_ERRORS = (pa.ArrowException, UnicodeError, OSError, EOFError, zlib.error)


def unreadable_error(path: str, file_format: str, error: Exception) -> InputError:
    """The one message for a file that is not readable as its format."""
    if isinstance(error, UnicodeDecodeError):
        byte = f"byte 0x{error.object[error.start]:02x}, " if error.start < len(error.object) else ""
        return InputError(
            f"{path}: cannot be read as {file_format}: it is not valid {error.encoding} text "
            f"({byte}{error.reason}). Set the spec's input.encoding to the file's encoding."
        )
    return InputError(f"{path}: cannot be read as {file_format}: {error}. Check --format and the file.")


def read_header(path: str, file_format: Optional[str] = None, input_format: InputFormat = InputFormat()) -> Optional[List[str]]:
    """The column names a file offers: a CSV's header row (or the spec's
    `column_names`), a Parquet file's schema; None for JSON lines and TFRecord,
    whose records name their own fields. A name may appear twice.

    Raises:
      InputError: the file cannot be opened or parsed as its format (a
        damaged gzip stream included).
    """
    fmt = file_format or infer_format(path)
    if fmt == "csv":
        if not input_format.header:
            return list(input_format.column_names)
        return _guarded(path, fmt, lambda: csv_header(path, input_format))
    if fmt == "parquet":
        return list(_guarded(path, fmt, lambda: _parquet_schema(path)).names)
    return None


def _guarded(path: str, fmt: str, read):
    try:
        return read()
    except InputError:
        raise
    except FILE_ERRORS as e:
        raise unreadable_error(path, fmt, e) from None


def _parquet_schema(path: str) -> pa.Schema:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as f:
        return pq.ParquetFile(f).schema_arrow


def _check_columns(path: str, header: Sequence[str], columns: Sequence[str]) -> None:
    """The file has each of `columns`, once.

    Raises:
      InputError: a column is missing (`missing_columns_error`), or a name the
        spec reads appears twice in the header, which would be ambiguous.
    """
    require_columns(path, header, columns)
    counts: Dict[str, int] = {}
    for name in header:
        counts[name] = counts.get(name, 0) + 1
    repeated = [c for c in columns if counts[c] > 1]
    if repeated:
        raise InputError(
            f"{path}: column name(s) {repeated} appear more than once in the file's header (its columns: "
            f"{list(header)[:50]}), and the feature spec reads them, so which column is meant is ambiguous. "
            "Rename the copies in the file so that each name is unique, and point the spec column's "
            "`source:` at the one to read."
        )


# Parquet (Arrow) column types each spec type reads. Kinds: integer (signed
# or not), floating (16, 32, 64 bit), decimal, bool, string (string, large
# string), binary (binary, large binary: must hold UTF-8 text, else the row is
# rejected), date, timestamp (any unit and time zone), null (a column of
# nulls: all missing). A dictionary-encoded column (a pandas categorical) is
# judged by its value type and read decoded. Text is parsed as in CSV files;
# an int from a float or decimal must be integral, a bool from a number 0 or 1
# (checked per row: pandas writes an int column with missing values as
# floats). Anything else (lists, structs, maps, times of day, durations...)
# is an InputError before the pipeline starts.
PARQUET_TYPES: Dict[str, Tuple[str, ...]] = {
    "float": ("integer", "floating", "decimal", "bool", "string", "null"),
    "int": ("integer", "floating", "decimal", "bool", "string", "null"),
    "bool": ("bool", "integer", "floating", "string", "null"),
    "string": ("string", "binary", "integer", "floating", "decimal", "bool", "date", "timestamp", "null"),
    "timestamp": ("timestamp", "date", "string", "null"),
}
_PARQUET_UTF8_ADVICE = "Parquet text must be UTF-8: fix the value upstream"


def _type_kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    for kind, test in (
        ("integer", pa.types.is_integer), ("floating", pa.types.is_floating), ("decimal", pa.types.is_decimal),
        ("bool", pa.types.is_boolean), ("date", pa.types.is_date), ("timestamp", pa.types.is_timestamp),
        ("null", pa.types.is_null), ("nested", pa.types.is_nested), ("nested", pa.types.is_union),
    ):
        if test(t):
            return kind
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return "other"


def _check_parquet_types(path: str, schema: pa.Schema, wanted: Sequence[Tuple[str, str]]) -> None:
    """Each (file column, spec type) of `wanted` is readable (`PARQUET_TYPES`).

    Raises:
      InputError: naming the file, the column, its type, the spec type and
        what to do.
    """
    for name, spec_type in wanted:
        field = schema.field(name)
        kind = _type_kind(field.type)
        accepted = PARQUET_TYPES[spec_type]
        if kind in accepted:
            continue
        if kind == "nested":
            why = "it is nested: several values per cell, and featurebridge reads one value per cell"
            fix = "Flatten it upstream (one column per field, or one row per list item)"
        else:
            why = f"a {spec_type} column reads Parquet columns of kind {', '.join(accepted)}"
            fix = "Write the column as one of those kinds upstream"
        raise InputError(
            f"{path}: column {name!r} has Arrow type {field.type} in the Parquet file, which a {spec_type} "
            f"spec column cannot read ({why}). {fix}, or point the spec column's `source:` at another column."
        )


def check_headers(files: Sequence[str], spec: FeatureSpec, file_format: Optional[str] = None) -> None:
    """Checks, before a pipeline starts, that every CSV and Parquet file has
    the spec's columns (one error lists each file that lacks some), each
    once, and that Parquet columns have types the spec can read
    (`PARQUET_TYPES`). Duplicate names among the columns the spec does not
    read are allowed.

    Raises:
      InputError: naming the files, the missing columns and what the files
        have; or the first file with a column the spec reads that is
        duplicated or has an unreadable type; or a file that cannot be read.
    """
    problems = []
    wanted = [(c.source, c.type) for c in spec.columns]
    for path in files:
        fmt = file_format or infer_format(path)
        schema = _guarded(path, fmt, lambda: _parquet_schema(path)) if fmt == "parquet" else None
        header = list(schema.names) if schema is not None else read_header(path, fmt, spec.input)
        if header is None:
            continue
        missing = [c for c in spec.source_names if c not in header]
        if missing:
            problems.append((path, missing, header))
            continue
        _check_columns(path, header, spec.source_names)
        if schema is not None:
            _check_parquet_types(path, schema, wanted)
    if not problems:
        return
    path, missing, header = problems[0]
    more = f" (and {len(problems) - 1} more file(s) like it: {[p for p, _, _ in problems[1:4]]})" if len(problems) > 1 else ""
    raise missing_columns_error(path, header, missing, more)


def _csv_chunks(
    path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat, types: Optional[Sequence[str]] = None
) -> Iterator[RawChunk]:
    header = list(fmt.column_names) if not fmt.header else csv_header(path, fmt)
    _check_columns(path, header, columns)
    yield from csv_chunks(path, columns, batch_size, fmt)


def _decoded(table: pa.Table) -> pa.Table:
    """`table` with its dictionary-encoded columns decoded."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table


def _parquet_chunks(
    path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat, types: Optional[Sequence[str]] = None
) -> Iterator[RawChunk]:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as f:
        # Buffered page reads, nothing read ahead: unbuffered, a file's column
        # chunks stayed in memory until its last batch (peak RSS grew ~70 bytes
        # a row: 1.1 GB at 1M rows, 1.6 GB at 5M; now flat at ~1.1 GB).
        pf = pq.ParquetFile(f, buffer_size=1 << 20, pre_buffer=False)
        _check_columns(path, pf.schema_arrow.names, columns)
        if types is not None:
            _check_parquet_types(path, pf.schema_arrow, list(zip(columns, types)))
        start = 1
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
            start += batch.num_rows
            yield utf8_columns(path, _decoded(pa.Table.from_batches([batch])), rows, _PARQUET_UTF8_ADVICE)


def _record_chunks(
    records: Iterator[Tuple[int, object]], columns: Sequence[str], batch_size: int
) -> Iterator[RawChunk]:
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


# A JSON string escape of a UTF-16 surrogate: json.loads lets a lone one
# through, and a lone surrogate is no character (Arrow refuses it).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _jsonl_records(path: str, columns: Sequence[str], encoding: str = "utf-8") -> Iterator[Tuple[int, object]]:
    advice = f"the spec's input.encoding is {encoding!r}: set it to the file's encoding or fix the line"
    with open_input(path) as f:
        for number, line in enumerate(f, start=1):
            try:
                text = line.decode(encoding).strip()
            except UnicodeDecodeError as e:
                shown = line.decode(encoding, errors="backslashreplace").strip()[:200]
                if is_utf8(encoding):
                    reason, code = not_utf8_reason(line, e, advice), NOT_UTF8
                else:
                    reason = f"not valid {encoding} text (byte 0x{line[e.start]:02x} at offset {e.start}); {advice}"
                    code = f"not {encoding}"
                yield number, RejectedRow(path, number, None, shown, reason, code)
                continue
            if not text:
                continue  # a blank line is not a record; numbers stay line numbers
            try:
                obj = json.loads(text)
            except ValueError as e:
                yield number, RejectedRow(path, number, None, text[:200], f"not valid JSON: {e}", "not valid JSON")
                continue
            except RecursionError:
                yield number, RejectedRow(path, number, None, text[:200], "not valid JSON: nested too deeply", "not valid JSON")
                continue
            if not isinstance(obj, dict):
                yield number, RejectedRow(path, number, None, text[:200], "a JSON line must be an object", "not a JSON object")
                continue
            yield number, _json_record(path, number, obj, columns, _SURROGATE_ESCAPE.search(text) is not None)


def _json_record(path: str, number: int, obj: dict, columns: Sequence[str], surrogates: bool) -> object:
    record: dict = {}
    for c in columns:
        v = obj.get(c)
        if isinstance(v, (dict, list)):
            return RejectedRow(path, number, c, json.dumps(v)[:200], "nested values are not supported", "nested value")
        if surrogates and isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                shown = v.encode("utf-8", errors="backslashreplace").decode("utf-8")[:200]
                reason = "not valid UTF-8 text: a \\u escape names a lone UTF-16 surrogate, which is no character; fix the value upstream"
                return RejectedRow(path, number, c, shown, reason, NOT_UTF8)
        record[c] = None if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return record


# Each chunker: (path, file column names, batch size, InputFormat, spec types
# or None) -> raw chunks whose columns carry the file's names, in the order given.
_CHUNKERS = {
    "csv": _csv_chunks,
    "parquet": _parquet_chunks,
    "jsonl": lambda path, columns, size, fmt, types: _record_chunks(_jsonl_records(path, columns, fmt.encoding), columns, size),
    "tfrecord": lambda path, columns, size, fmt, types: _record_chunks(tfrecord_records(path, columns), columns, size),
}


def raw_chunks(
    path: str,
    file_format: str,
    columns: Sequence[str],
    batch_size: int,
    input_format: InputFormat = InputFormat(),
    types: Optional[Sequence[str]] = None,
) -> Iterator[RawChunk]:
    """Reads `path` as `file_format` in chunks of at most `batch_size` rows.

    Args:
      columns: the file columns to read (the spec's `source_names`); the
        chunks' tables carry them under these names, in this order.
      types: the spec types of `columns` (in order), to check a Parquet
        file's column types against (`PARQUET_TYPES`); None skips the check.

    Raises:
      InputError: the file lacks one of `columns` or has one twice (CSV and
        Parquet; JSON lines and TFRecord records without a field hold a
        missing value instead); a Parquet column of a type `types` cannot
        read; a damaged gzip stream or TFRecord; a CSV row over
        `csv_blocks.MAX_BLOCK`.
      FILE_ERRORS: the file is not readable as `file_format` (`read_file`
        turns these into InputError).
    """
    return _CHUNKERS[file_format](path, columns, batch_size, input_format, types)
