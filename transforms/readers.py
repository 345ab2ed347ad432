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
"""

from __future__ import annotations

import json
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.errors import InputError
from featurebridge.transforms.input_format import InputFormat
from featurebridge.transforms.spec import FeatureSpec
from featurebridge.transforms.validation import RejectedRow, missing_columns_error, require_columns

__all__ = [
    "FORMATS",
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


def unreadable_error(path: str, file_format: str, error: Exception) -> InputError:
    """The one message for a file that is not readable as its format."""
    return InputError(f"{path}: cannot be read as {file_format}: {error}. Check --format and the file.")


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
        raise unreadable_error(path, fmt, e) from None
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
    raise missing_columns_error(path, header, missing, more)


def _csv_chunks(path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat = InputFormat()) -> Iterator[RawChunk]:
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

    require_columns(path, read_header(path, "csv", fmt) or [], columns)
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


def _parquet_chunks(path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat = InputFormat()) -> Iterator[RawChunk]:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as f:
        pf = pq.ParquetFile(f)
        require_columns(path, pf.schema_arrow.names, columns)
        start = 1
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            yield pa.Table.from_batches([batch]), np.arange(start, start + batch.num_rows), []
            start += batch.num_rows


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


def raw_chunks(
    path: str, file_format: str, columns: Sequence[str], batch_size: int, input_format: InputFormat = InputFormat()
) -> Iterator[RawChunk]:
    """Reads `path` as `file_format` in chunks of at most `batch_size` rows.

    Args:
      columns: the file columns to read (the spec's `source_names`); the
        chunks' tables carry them under these names, in this order.

    Raises:
      InputError: the file lacks one of `columns` (CSV and Parquet; JSON lines
        and TFRecord records without a field hold a missing value instead).
      pa.ArrowInvalid, UnicodeDecodeError, OSError: the file is not readable
        as `file_format` (`read_file` turns these into InputError).
    """
    return _CHUNKERS[file_format](path, columns, batch_size, input_format)
