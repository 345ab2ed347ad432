"""A bounds-checked walk over a caller's Row bytes, before Beam decodes them.

Beam's compiled RowCoder trusts its input: a length prefix larger than the
bytes left moves its read position past the buffer, and the next read of a
byte there can crash the whole process (a segmentation fault, seen in
tests/test_expansion_fuzz.py). The expansion service decodes Rows that remote
callers send, so it first walks them here, in plain Python, with the same
layout Beam's coders read (`apache_beam.coders.row_coder`): field count and
null mask, then each present field by its type. Bytes that would make Beam
read past their end are refused; only bytes that pass reach Beam's decoder.
"""

from __future__ import annotations

import struct

__all__ = ["RowBytesError", "check_row_bytes"]

_MAX_DEPTH = 32
_FIXED = {"INT16": 2, "BYTE": 1, "FLOAT": 4, "DOUBLE": 8, "BOOLEAN": 1}
_VARINT = ("INT32", "INT64")
_LENGTH_PREFIXED = ("STRING", "BYTES")


class RowBytesError(ValueError):
    """The bytes do not hold a Row of the schema (what is wrong, for the caller)."""


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.left():
            raise RowBytesError(f"a length of {n} at byte {self.pos} runs past the end ({self.left()} bytes left)")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def varint(self) -> int:
        """A varint as Beam's read_var_int64 reads it (two's complement int64)."""
        result, shift = 0, 0
        for _ in range(10):
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result - (1 << 64) if result >= 1 << 63 else result
            shift += 7
        raise RowBytesError(f"a varint longer than 10 bytes ends at byte {self.pos}")

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]


def check_row_bytes(schema, payload: bytes) -> None:
    """Walks `payload` as a Row of `schema` (a schema_pb2.Schema).

    Raises:
      RowBytesError: the bytes end too early for the schema, nest deeper than
        32 levels, or use a field type this service does not take.
    """
    _row(schema, _Reader(bytes(payload)), 0)


def _row(schema, reader: _Reader, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise RowBytesError(f"Rows nest deeper than {_MAX_DEPTH} levels")
    fields = list(schema.fields)
    if schema.encoding_positions_set and [f.encoding_position for f in fields] != list(range(len(fields))):
        raise RowBytesError("a schema with reordered encoding positions is not accepted")
    count = reader.varint()
    mask_length = reader.varint()
    mask = reader.take(mask_length) if mask_length else b""
    for i in range(max(0, min(len(fields), count))):
        if mask and i >> 3 < len(mask) and mask[i >> 3] & (1 << (i & 7)):
            continue
        _value(fields[i].type, reader, depth + 1, in_row=True)


def _value(field_type, reader: _Reader, depth: int, in_row: bool = False) -> None:
    """One value; a Row's own fields carry no null flag (the Row's null mask
    says which are null), nullable elements of arrays and maps do."""
    if depth > _MAX_DEPTH:
        raise RowBytesError(f"values nest deeper than {_MAX_DEPTH} levels")
    if field_type.nullable and not in_row and reader.take(1)[0] == 0:
        return
    kind = field_type.WhichOneof("type_info")
    if kind == "atomic_type":
        from apache_beam.portability.api import schema_pb2

        name = schema_pb2.AtomicType.Name(field_type.atomic_type)
        if name in _FIXED:
            reader.take(_FIXED[name])
        elif name in _VARINT:
            reader.varint()
        elif name in _LENGTH_PREFIXED:
            reader.take(reader.varint())
        else:
            raise RowBytesError(f"the atomic type {name} is not accepted")
    elif kind in ("array_type", "iterable_type"):
        element = getattr(field_type, kind).element_type
        size = reader.int32()
        if size >= 0:
            _elements(element, size, reader, depth)
        else:  # Beam's chunked form: counts until a zero count
            chunk = reader.varint()
            while chunk > 0:
                _elements(element, chunk, reader, depth)
                chunk = reader.varint()
    elif kind == "map_type":
        size = reader.int32()
        if size > reader.left():
            raise RowBytesError(f"a map of {size} entries cannot fit in {reader.left()} bytes")
        for _ in range(max(0, size)):
            _value(field_type.map_type.key_type, reader, depth + 1)
            _value(field_type.map_type.value_type, reader, depth + 1)
    elif kind == "row_type":
        _row(field_type.row_type.schema, reader, depth + 1)
    elif kind == "logical_type":
        if field_type.logical_type.urn == "beam:logical_type:millis_instant:v1":
            reader.take(8)  # Beam reads it with TimestampCoder, not its representation
        else:
            _value(field_type.logical_type.representation, reader, depth + 1)
    else:
        raise RowBytesError(f"the field type {kind!r} is not accepted")


def _elements(element_type, count: int, reader: _Reader, depth: int) -> None:
    if count > reader.left():
        raise RowBytesError(f"{count} elements cannot fit in {reader.left()} bytes")
    for _ in range(count):
        _value(element_type, reader, depth + 1)
