"""CSV files to raw chunks, read in blocks that grow to fit the longest row.

pyarrow parses a CSV in blocks and cannot parse a row longer than a block
("straddling object straddles two block boundaries"). A legal file may hold
a 10 MB cell, so on that error the file is read again with a block four times
larger (up to `MAX_BLOCK`), skipping the rows already handed out: every row
is handed out once, in order, with its own number, and every rejected row is
reported once. A row longer than `MAX_BLOCK` is an InputError.

Cells are read as text. When pyarrow meets bytes that are not UTF-8 (which
fail the whole read, in a cell or in a row it cannot report as invalid), the
file is read again through `file_bytes.marked_utf8`, which turns those bytes
into marker characters: a cell holding one rejects its row instead of failing
the file, and the normal case pays nothing for it.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator, List, Sequence

import numpy as np
import pyarrow as pa

from featurebridge.transforms.errors import InputError
from featurebridge.transforms.file_bytes import is_utf8, marked_cells, marked_utf8, open_input, unmark
from featurebridge.transforms.input_format import InputFormat
from featurebridge.transforms.validation import RejectedRow

__all__ = ["MAX_BLOCK", "csv_chunks", "csv_header"]

_HEADER_BLOCK = 1 << 20
_FIRST_BLOCK = 1 << 22
# The longest row featurebridge reads; a block of this size is held in memory.
MAX_BLOCK = 1 << 30


def _straddles(error: Exception) -> bool:
    return "straddling object straddles" in str(error)


def _not_utf8(error: Exception) -> bool:
    # A cell pyarrow cannot convert to text, or a row with the wrong number of
    # fields whose text it cannot hand to the invalid row handler (which
    # otherwise skips every such row).
    return "invalid UTF8" in str(error) or re.match(r"CSV parse error: (Row #\d+: )?Expected \d+ columns", str(error))


def _larger_block(path: str, block: int) -> int:
    if block >= MAX_BLOCK:
        raise InputError(
            f"{path}: a row is longer than {MAX_BLOCK >> 20} MiB, the longest row featurebridge reads. "
            "Shorten that row's cells (keep long payloads out of the training input), or check that its "
            "quotes are balanced."
        )
    return min(block * 4, MAX_BLOCK)


def _parse_options(fmt: InputFormat, on_invalid: Callable):
    import pyarrow.csv as pacsv

    return pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quote, invalid_row_handler=on_invalid)


def csv_header(path: str, fmt: InputFormat = InputFormat()) -> List[str]:
    """The column names of a CSV file's header row ([] for an empty file).

    Raises:
      InputError: a damaged gzip stream; a first row longer than `MAX_BLOCK`;
        a header row that is not valid UTF-8.
      pa.ArrowInvalid, UnicodeDecodeError: the file is not CSV in `fmt`.
    """
    import pyarrow.csv as pacsv

    block, marked = _HEADER_BLOCK, False
    while True:
        with (marked_utf8(open_input(path)) if marked else open_input(path)) as stream:
            try:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(use_threads=False, block_size=block, encoding=fmt.encoding),
                    parse_options=_parse_options(fmt, lambda row: "skip"),
                )
            except pa.ArrowInvalid as e:
                if "Empty CSV file" in str(e):
                    return []
                if _straddles(e):
                    block = _larger_block(path, block)
                elif _not_utf8(e) and not marked and is_utf8(fmt.encoding):
                    marked = True  # a data row of the first block is not UTF-8: the reader rejects it
                else:
                    raise
                continue
        try:
            names = list(reader.schema.names)
        except UnicodeDecodeError as e:  # pyarrow decodes a name with invalid bytes here
            if not isinstance(e.object, bytes):
                raise
            raise _header_not_utf8(path, e.object, e, fmt) from None
        for name in names if marked else ():
            try:
                unmark(name).decode("utf-8")
            except UnicodeDecodeError as e:
                raise _header_not_utf8(path, unmark(name), e, fmt) from None
        return names


def _header_not_utf8(path: str, name: bytes, error: UnicodeDecodeError, fmt: InputFormat) -> InputError:
    shown = name.decode("utf-8", errors="backslashreplace")
    return InputError(
        f"{path}: the header row is not valid UTF-8 text (column {shown!r}, byte 0x{name[error.start]:02x} "
        f"at offset {error.start}); the spec's input.encoding is {fmt.encoding!r}: set it to the file's "
        "encoding, or fix the header."
    )


class _Progress:
    """What one file's reading has handed out so far, across re-reads."""

    def __init__(self):
        self.valid = 0  # valid rows handed out
        self.invalid: List[int] = []  # numbers of the invalid rows handed out, sorted
        self.reported: set = set()  # the same numbers, for lookups
        self.marked = False  # read through file_bytes.marked_utf8 (the file is not all UTF-8)


def csv_chunks(
    path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat = InputFormat()
) -> Iterator[tuple]:
    """Reads the `columns` of a CSV file as raw chunks (table of text columns,
    1-based row numbers, rejected rows) of at most `batch_size` rows.

    A row with the wrong number of fields or a cell that is not UTF-8 is
    rejected; blank lines are not rows. The caller checks the header first.

    Raises:
      InputError: a damaged gzip stream; a row longer than `MAX_BLOCK`.
      pa.ArrowInvalid, UnicodeDecodeError: the file is not CSV in `fmt`.
    """
    progress = _Progress()
    block = _FIRST_BLOCK
    while True:
        try:
            yield from _read_pass(path, columns, batch_size, fmt, block, progress)
            return
        except pa.ArrowInvalid as e:
            if _straddles(e):
                block = _larger_block(path, block)
            elif _not_utf8(e) and not progress.marked and is_utf8(fmt.encoding):
                progress.marked = True
            else:
                raise


def _read_pass(
    path: str, columns: Sequence[str], batch_size: int, fmt: InputFormat, block: int, progress: _Progress
) -> Iterator[tuple]:
    """Reads the file from its start with `block`, handing out what
    `progress` does not have yet."""
    import pyarrow.csv as pacsv

    pending: List[RejectedRow] = []
    header_lines = 1 if fmt.header else 0
    advice = (
        f"the spec's input.encoding is {fmt.encoding!r}: set it to the file's encoding or fix the cell"
    )

    def on_invalid(row) -> str:
        if not (row.text or "").strip():
            return "skip"  # a blank line is not a row (pandas skips it too)
        number = (row.number - header_lines) if row.number is not None else -1
        if number < 0 or number not in progress.reported:
            text = row.text or ""
            if progress.marked:
                text = unmark(text).decode("utf-8", errors="backslashreplace")
            pending.append(
                RejectedRow(
                    path, number, None, text[:200],
                    f"row has {row.actual_columns} fields, the header has {row.expected_columns}",
                    "wrong number of fields",
                )
            )
        return "skip"

    stream = marked_utf8(open_input(path)) if progress.marked else open_input(path)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                use_threads=False,
                block_size=block,
                encoding=fmt.encoding,
                column_names=list(fmt.column_names) if not fmt.header else None,
            ),
            parse_options=_parse_options(fmt, on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                include_columns=list(columns),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        seen = 0  # valid rows of this pass
        for batch in reader:
            new_bad, pending[:] = list(pending), []
            _record_invalid(progress, new_bad)
            skip = min(max(progress.valid - seen, 0), batch.num_rows)  # handed out by an earlier pass
            seen += batch.num_rows
            batch = batch.slice(skip)
            rows = _rows_skipping(progress.valid, batch.num_rows, progress.invalid)
            progress.valid += batch.num_rows
            if batch.num_rows == 0 and not new_bad:
                continue
            table = pa.Table.from_batches([batch])
            if progress.marked:
                table, rows, not_text = marked_cells(path, table, rows, advice)
                new_bad += not_text
            for start in range(0, max(table.num_rows, 1), batch_size):
                yield table.slice(start, batch_size), rows[start : start + batch_size], new_bad if start == 0 else []
        if pending:
            _record_invalid(progress, pending)
            yield _empty(columns), np.array([], np.int64), list(pending)
    finally:
        stream.close()


def _record_invalid(progress: _Progress, rejected: List[RejectedRow]) -> None:
    if rejected:
        progress.invalid.extend(r.row for r in rejected)
        progress.invalid.sort()
        progress.reported.update(r.row for r in rejected)


def _empty(columns: Sequence[str]) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in columns})


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
