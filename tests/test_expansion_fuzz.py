"""A bounded fuzz of the Expand request decoder (what the service runs on a
caller's request before any construction): `gate.check_names`,
`gate.prune_request`, `gate.decode_transform` and
`registry.check_directories`, in-process.

Whatever the request, the decoder either accepts it or raises a
`FeaturebridgeError` (whose message is for the caller, short and without a
traceback), each example within a second and without allocating more than a
bounded amount. Derandomized, so CI runs the same examples every time.
"""

import time
import tracemalloc

import apache_beam as beam
import pytest
from apache_beam.portability.api import beam_expansion_api_pb2, beam_runner_api_pb2, external_transforms_pb2, schema_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebridge.expansion_service import gate, registry
from featurebridge.transforms.errors import FeaturebridgeError
from tests.expansion_helpers import ANALYZE_ID, FQN_URN, SCHEMA_TRANSFORM_URN, SPEC, expansion_request, schema_transform_spec

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROOTS = ("/srv/featurebridge-fuzz-root",)
MAX_EXAMPLE_S = 1.0
MAX_PEAK_BYTES = 64 << 20

VALID = expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=ROOTS[0] + "/out"))
VALID_BYTES = VALID.SerializeToString()


def decode(request) -> None:
    """The service's decoding of one request, up to (not including) construction."""
    gate.check_names(request)
    gate.prune_request(request)
    entry, config = gate.decode_transform(request.transform)
    registry.check_directories(entry.identifier, config, ROOTS)


def assert_decodes_or_refuses(request) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        decode(request)
    except FeaturebridgeError as e:
        message = str(e)
        assert message and len(message) < 4000, len(message)
        assert "Traceback" not in message
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < MAX_EXAMPLE_S
    assert peak < MAX_PEAK_BYTES, peak


def test_the_valid_request_decodes():
    decode(VALID)


@FUZZ
@given(st.data())
def test_mutated_request_bytes(data):
    """Bit flips, insertions and deletions in a valid request's bytes; what
    still parses as an ExpansionRequest (gRPC refuses the rest) is decoded."""
    raw = bytearray(VALID_BYTES)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "varint"]))
        if action == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del raw[at:at + data.draw(st.integers(1, 16))]
        else:  # a huge length or count where a varint was
            raw[at:at + 1] = b"\xff\xff\xff\xff\x0f"
    try:
        request = beam_expansion_api_pb2.ExpansionRequest.FromString(bytes(raw))
    except Exception:
        return  # not a message: gRPC's deserializer refuses it before the service sees it
    assert_decodes_or_refuses(request)


_ATOMIC = st.sampled_from(list(schema_pb2.AtomicType.values())).filter(lambda v: v != 0)


def _field_type(depth: int = 0):
    atomic = _ATOMIC.map(lambda a: schema_pb2.FieldType(atomic_type=a, nullable=True))
    if depth > 2:
        return atomic
    inner = _field_type(depth + 1)
    return st.one_of(
        atomic,
        inner.map(lambda t: schema_pb2.FieldType(array_type=schema_pb2.ArrayType(element_type=t))),
        inner.map(lambda t: schema_pb2.FieldType(iterable_type=schema_pb2.IterableType(element_type=t))),
        st.tuples(inner, inner).map(lambda kv: schema_pb2.FieldType(map_type=schema_pb2.MapType(key_type=kv[0], value_type=kv[1]))),
        st.text(max_size=40).map(lambda urn: schema_pb2.FieldType(logical_type=schema_pb2.LogicalType(urn=urn))),
        st.lists(st.tuples(st.text(max_size=10), inner), max_size=3).map(
            lambda fs: schema_pb2.FieldType(row_type=schema_pb2.RowType(schema=schema_pb2.Schema(
                fields=[schema_pb2.Field(name=n, type=t) for n, t in fs])))),
    )


_SCHEMAS = st.lists(st.tuples(st.text(max_size=20), _field_type()), max_size=6).map(
    lambda fs: schema_pb2.Schema(fields=[schema_pb2.Field(name=n, type=t) for n, t in fs]))


@FUZZ
@given(identifier=st.one_of(st.just(ANALYZE_ID), st.text(max_size=60)), schema=_SCHEMAS,
       row=st.binary(max_size=200), urn=st.sampled_from([SCHEMA_TRANSFORM_URN, FQN_URN, "beam:transform:pickled_python:v1"]))
def test_random_configuration_rows(identifier, schema, row, urn):
    """Random configuration schemas and Row bytes under both payload URNs."""
    if urn == FQN_URN:
        payload = external_transforms_pb2.ExternalConfigurationPayload(schema=schema, payload=row)
    else:
        payload = external_transforms_pb2.SchemaTransformPayload(
            identifier=identifier, configuration_schema=schema, configuration_row=row)
    request = beam_expansion_api_pb2.ExpansionRequest()
    request.CopyFrom(VALID)
    request.transform.spec.CopyFrom(beam_runner_api_pb2.FunctionSpec(urn=urn, payload=payload.SerializeToString()))
    assert_decodes_or_refuses(request)


@FUZZ
@given(schema=_SCHEMAS, namespace=st.text(max_size=300), unique_name=st.text(max_size=300))
def test_random_input_row_schemas_and_names(schema, namespace, unique_name):
    """Random input Row schemas (nested rows, arrays, maps, logical types) and names."""
    request = beam_expansion_api_pb2.ExpansionRequest()
    request.CopyFrom(VALID)
    coder_id = request.components.pcollections["in"].coder_id
    request.components.coders[coder_id].spec.payload = schema.SerializeToString()
    request.namespace = namespace
    request.transform.unique_name = unique_name
    assert_decodes_or_refuses(request)


@pytest.mark.parametrize("value", ["x" * 1_500_000, "\n" * 1000, "/srv/featurebridge-fuzz-root/" + "a/" * 100_000])
def test_huge_configuration_values_are_refused_briefly(value):
    request = expansion_request(schema_transform_spec(ANALYZE_ID, spec=value, output_dir=value))
    assert_decodes_or_refuses(request)
    with pytest.raises(FeaturebridgeError):
        decode(request)


beam.coders.registry  # the Row coders the helpers register are in place
