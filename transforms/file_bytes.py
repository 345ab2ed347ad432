"""The bytes of input files: opening them (gzip included) with errors that
name the file, and checking that text cells are valid UTF-8.

A damaged gzip stream raises InputError at the point it is found, never a
bare zlib, EOF or "closed file" error, and never a silently shorter stream.
Text cells that are not valid UTF-8 become rejected rows, found without a
per-cell loop unless a column holds one: binary columns (`utf8_columns`)
by bisection, and text read through `marked_utf8` (whose bytes that are not
UTF-8 become marker characters U+10FF00 + byte) by the markers.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.errors import InputError
from featurebridge.transforms.validation import RejectedRow

__all__ = [
    "NOT_UTF8",
    "is_utf8",
    "marked_cells",
    "marked_utf8",
    "not_utf8_reason",
    "open_input",
    "unmark",
    "utf8_columns",
]

# The rejected rows' code for a cell or line that is not valid UTF-8.
NOT_UTF8 = "not UTF-8"
_GZIP_MAGIC = b"\x1f\x8b"


class _GzipInput(io.RawIOBase):
    """The uncompressed bytes of a gzip stream; damage raises InputError."""

    def __init__(self, path: str, raw):
        super().__init__()
        self._path = path
        self._raw = raw
        self._gzip = gzip.GzipFile(fileobj=raw, mode="rb")
        self._produced = 0  # uncompressed bytes handed out so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._gzip.read1(len(buffer))  # one step at a time: exact counts in errors
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise self._error(e) from None
        buffer[: len(data)] = data
        self._produced += len(data)
        return len(data)

    def _error(self, error: Exception) -> InputError:
        try:
            consumed = self._raw.tell()
        except (OSError, ValueError, AttributeError):
            consumed = None
        where = f"after {consumed} bytes of the file" if consumed is not None else "in the file"
        if isinstance(error, EOFError):
            return InputError(
                f"{self._path}: truncated gzip stream {where} ({self._produced} bytes uncompressed): "
                "the file ends inside the compressed data. Re-create it (was a copy or download cut short?)."
            )
        if self._produced == 0 and isinstance(error, gzip.BadGzipFile) and not self._starts_with_magic():
            return InputError(
                f"{self._path}: not a valid gzip file ({error}): re-create it, or drop .gz from the "
                "name if it is not compressed."
            )
        return InputError(
            f"{self._path}: not a valid gzip file (damaged compressed data {where}, "
            f"{self._produced} bytes uncompressed: {error}): re-create it."
        )

    def _starts_with_magic(self) -> bool:
        try:
            with FileSystems.open(self._path, compression_type="uncompressed") as f:
                return f.read(2) == _GZIP_MAGIC
        except OSError:
            return False

    def close(self) -> None:
        if not self.closed:
            try:
                self._gzip.close()
                self._raw.close()
            finally:
                super().close()


def open_input(path: str):
    """Opens `path` for reading bytes; a trailing ``.gz`` means gzip.

    Returns a buffered binary file object (``read``, ``readline``, line
    iteration, ``close``). Reading a damaged gzip stream raises InputError
    naming the file: not gzip at all, truncated (with the byte counts), or
    corrupt. An empty ``.gz`` file reads as empty.
    """
    raw = FileSystems.open(path, compression_type="uncompressed")
    if not path.endswith(".gz"):
        return raw
    return io.BufferedReader(_GzipInput(path, raw), buffer_size=1 << 20)


def is_utf8(encoding: str) -> bool:
    """Whether an ``input.encoding`` names UTF-8."""
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def not_utf8_reason(value: bytes, error: UnicodeDecodeError, advice: str) -> str:
    """The rejected row's reason for `value`, which failed to decode with `error`."""
    return f"not valid UTF-8 text (byte 0x{value[error.start]:02x} at offset {error.start}); {advice}"


def _bad_cells(arr: pa.Array, target: pa.DataType) -> List[Tuple[int, bytes, UnicodeDecodeError]]:
    """(index, value, error) of the cells of a binary array that are not UTF-8.

    Called only when the whole array failed to cast: halves that cast cleanly
    are skipped, so a few bad cells cost a few dozen casts, not a Python loop.
    """
    found: List[Tuple[int, bytes, UnicodeDecodeError]] = []
    pending = [(0, len(arr))]
    while pending:
        start, length = pending.pop()
        part = arr.slice(start, length)
        if length <= 64:
            for i, value in enumerate(part.to_pylist()):
                if value is None:
                    continue
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as e:
                    found.append((start + i, value, e))
            continue
        try:
            part.cast(target)
            continue
        except pa.ArrowInvalid:
            half = length // 2
            pending += [(start + half, length - half), (start, half)]
    return sorted(found, key=lambda item: item[0])


def utf8_columns(
    path: str, table: pa.Table, rows: np.ndarray, advice: str, columns: Optional[Sequence[str]] = None
) -> Tuple[pa.Table, np.ndarray, List[RejectedRow]]:
    """Turns binary columns into text columns, rejecting rows with a cell
    that is not valid UTF-8.

    Args:
      path: the file, for the rejected rows.
      table: the chunk; its binary and large binary columns (or those of
        `columns`) become string and large string columns.
      rows: the chunk rows' 1-based numbers in `path`.
      advice: what the reason tells the user to do (after the position of
        the first bad byte).

    Returns:
      (table, rows, rejected): the rows with a bad cell are left out of table
      and rows and listed in rejected, code `NOT_UTF8`, each naming every bad
      cell (value shown with backslash escapes). Null cells stay null.
    """
    names = table.column_names if columns is None else list(columns)
    problems: _Problems = {}
    texts: Dict[str, Optional[pa.ChunkedArray]] = {}  # the cast columns; None where a cell failed
    for name in names:
        column = table.column(name)
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            continue
        target = pa.large_string() if pa.types.is_large_binary(column.type) else pa.string()
        try:
            texts[name] = column.cast(target)  # validates every cell: the one pass of the normal case
            continue
        except pa.ArrowInvalid:
            texts[name] = None
        for i, value, error in _bad_cells(column.combine_chunks(), target):
            _add_problem(problems, i, name, value, error, advice)
    table, rows, rejected, keep = _reject(path, table, rows, problems)
    for name, text in texts.items():
        column = table.column(name)
        if text is None:
            text = column.cast(pa.large_string() if pa.types.is_large_binary(column.type) else pa.string())
        elif keep is not None:
            text = text.filter(keep)
        table = table.set_column(table.column_names.index(name), name, text)
    return table, rows, rejected


# Cells' problems by row index: [(column, value shown, reason, code)].
_Problems = Dict[int, List[Tuple[str, Optional[str], str, str]]]


def _add_problem(problems: _Problems, i: int, column: str, value: bytes, error: UnicodeDecodeError, advice: str) -> None:
    shown = value.decode("utf-8", errors="backslashreplace")[:200]
    problems.setdefault(i, []).append((column, shown, not_utf8_reason(value, error, advice), NOT_UTF8))


def _reject(path: str, table: pa.Table, rows: np.ndarray, problems: _Problems):
    """(table and rows without the rows that have problems, their RejectedRows,
    the mask of kept rows or None when all are kept)."""
    if not problems:
        return table, rows, [], None
    order = sorted(problems)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[order] = False
    numbers = rows[order].tolist()
    rejected = []
    for i, number in zip(order, numbers):
        (column, value, reason, code), *more = problems[i]
        rejected.append(RejectedRow(path, number, column, value, reason, code, tuple(more)))
    mask = pa.array(keep)
    return table.filter(mask), rows[keep], rejected, mask


# Bytes that are not UTF-8 (always 0x80..0xFF) become U+10FF00 + byte
# (private use, valid UTF-8), so pyarrow can parse the text and the cells
# holding them can be found and restored. A file's own characters
# U+10FF80..U+10FFFF read as such bytes.
_MARK = 0x10FF00
_MARKER = "[\\x{10FF80}-\\x{10FFFF}]"
# marker -> the surrogate that "surrogateescape" encodes as the byte
_UNMARK = {_MARK + b: 0xDC00 + b for b in range(0x80, 0x100)}


def _mark(error: UnicodeDecodeError):
    return "".join(chr(_MARK + b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("featurebridge.mark_not_utf8", _mark)


class _MarkedUtf8(io.RawIOBase):
    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")("featurebridge.mark_not_utf8")
        self._out = b""
        self._at = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at == len(self._out) and not self._eof:
            chunk = self._raw.read(1 << 20)
            self._eof = not chunk
            self._out, self._at = self._decoder.decode(chunk, final=self._eof).encode("utf-8"), 0
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()


def marked_utf8(raw):
    """`raw` (a binary file object) as valid UTF-8: bytes that are not UTF-8
    become marker characters (`unmark` restores them). Closing closes `raw`."""
    return io.BufferedReader(_MarkedUtf8(raw), buffer_size=1 << 20)


def unmark(text: str) -> bytes:
    """The original bytes of text read through `marked_utf8`."""
    return text.translate(_UNMARK).encode("utf-8", errors="surrogateescape")


def marked_cells(
    path: str, table: pa.Table, rows: np.ndarray, advice: str
) -> Tuple[pa.Table, np.ndarray, List[RejectedRow]]:
    """Rejects the rows of a chunk read through `marked_utf8` that have a
    cell with a marker, as `utf8_columns` does for binary columns.

    Returns:
      (table, rows, rejected), as `utf8_columns`.
    """
    problems: _Problems = {}
    for name in table.column_names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        marked = pc.fill_null(pc.match_substring_regex(column, _MARKER), False)
        if not pc.any(marked).as_py():
            continue
        indices = np.flatnonzero(marked.to_numpy(zero_copy_only=False))
        for i, text in zip(indices, column.take(pa.array(indices)).to_pylist()):
            value = unmark(text)
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as error:
                _add_problem(problems, int(i), name, value, error, advice)
    table, rows, rejected, _ = _reject(path, table, rows, problems)
    return table, rows, rejected
