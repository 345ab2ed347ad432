"""expansion_service.row_bytes: the walk over a caller's Row bytes that runs
before Beam's compiled decoder (which trusts lengths and can crash the
process on bytes that lie about them)."""

import subprocess
import sys

import pytest
from apache_beam.portability.api import schema_pb2

from featurebridge.expansion_service.row_bytes import RowBytesError, check_row_bytes


def _field(name, **type_fields):
    return schema_pb2.Field(name=name, type=schema_pb2.FieldType(**type_fields))


STRING = dict(atomic_type=schema_pb2.STRING)
NESTED = schema_pb2.Schema(fields=[_field("k", **STRING), _field("v", atomic_type=schema_pb2.INT64)])
SCHEMA = schema_pb2.Schema(fields=[
    _field("s", **STRING),
    _field("maybe", atomic_type=schema_pb2.STRING, nullable=True),
    _field("n", atomic_type=schema_pb2.INT64),
    _field("i", atomic_type=schema_pb2.INT32),
    _field("d", atomic_type=schema_pb2.DOUBLE),
    _field("f", atomic_type=schema_pb2.FLOAT),
    _field("b", atomic_type=schema_pb2.BOOLEAN),
    _field("raw", atomic_type=schema_pb2.BYTES),
    _field("names", array_type=schema_pb2.ArrayType(element_type=schema_pb2.FieldType(**STRING))),
    _field("holes", array_type=schema_pb2.ArrayType(
        element_type=schema_pb2.FieldType(atomic_type=schema_pb2.INT64, nullable=True))),
    _field("pairs", map_type=schema_pb2.MapType(key_type=schema_pb2.FieldType(**STRING),
                                                value_type=schema_pb2.FieldType(atomic_type=schema_pb2.INT64))),
    _field("row", row_type=schema_pb2.RowType(schema=NESTED)),
    _field("rows", array_type=schema_pb2.ArrayType(
        element_type=schema_pb2.FieldType(row_type=schema_pb2.RowType(schema=NESTED)))),
])


@pytest.mark.parametrize("maybe", [None, "here"])
def test_rows_beam_encodes_pass_and_decode_unchanged(maybe):
    from apache_beam import coders

    from apache_beam.typehints.schemas import named_tuple_from_schema

    coder = coders.RowCoder(SCHEMA)
    nested = named_tuple_from_schema(NESTED)
    value = named_tuple_from_schema(SCHEMA)(
        s="héllo", maybe=maybe, n=-(2**63), i=-7, d=2.5, f=0.5, b=True, raw=b"\x00\xff",
        names=["a", "", "c" * 300], holes=[1, None, -3], pairs={"x": 1, "y": -2},
        row=nested(k="k", v=2**62), rows=[nested(k="a", v=1), nested(k="b", v=-1)],
    )
    payload = coder.encode(value)
    check_row_bytes(SCHEMA, payload)
    assert coder.decode(payload) == value


@pytest.mark.parametrize("cut", [1, 2, 5, 20])
def test_truncated_bytes_are_refused(cut):
    from apache_beam import coders

    from apache_beam.typehints.schemas import named_tuple_from_schema

    coder = coders.RowCoder(NESTED)
    payload = coder.encode(named_tuple_from_schema(NESTED)(k="key" * 10, v=5))
    with pytest.raises(RowBytesError, match="past the end"):
        check_row_bytes(NESTED, payload[:-cut])


def test_a_lying_length_is_refused_where_beam_would_crash():
    # Two string fields; the first claims 2**40 bytes. Beam's compiled decoder
    # jumps its read position past the buffer and reads the second length
    # there (a segmentation fault); the service refuses before that. Run in a
    # child so a regression fails this test, not the whole suite.
    code = """
from apache_beam.portability.api import schema_pb2
from featurebridge.expansion_service import gate
from featurebridge.transforms.errors import FeaturebridgeError
s = schema_pb2.FieldType(atomic_type=schema_pb2.STRING)
schema = schema_pb2.Schema(fields=[schema_pb2.Field(name="a", type=s), schema_pb2.Field(name="b", type=s)])
lying = bytes([2, 0]) + bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]) + b"xy"
try:
    gate._decode_row(schema, lying, "the configuration")
except FeaturebridgeError as e:
    print("refused:", e)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused: the configuration: the Row bytes do not match the Row schema" in proc.stdout


def test_deep_nesting_is_refused():
    schema = schema_pb2.Schema()
    inner = schema
    for _ in range(40):
        child = schema_pb2.Schema()
        inner.fields.append(_field("r", row_type=schema_pb2.RowType(schema=child)))
        inner = inner.fields[0].type.row_type.schema
    with pytest.raises(RowBytesError, match="deeper"):
        check_row_bytes(schema, bytes([1, 0]) * 41)
