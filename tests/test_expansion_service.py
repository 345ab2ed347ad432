"""The expansion service as a separate process, called with Beam's own client
classes and raw gRPC: discovery, the expansion response (row coders,
environment, staged artifacts), and every refusal, each followed by a health
check that shows the server is still serving."""


import hashlib
import io
import os
import signal
import tarfile
import threading
import time
import typing
from typing import List, Optional

import grpc
import pytest

import apache_beam as beam
from apache_beam.portability.api import (
    beam_artifact_api_pb2,
    beam_artifact_api_pb2_grpc,
    beam_expansion_api_pb2,
    beam_expansion_api_pb2_grpc,
    beam_runner_api_pb2,
    external_transforms_pb2,
    schema_pb2,
)
from apache_beam.transforms.external import (
    ExternalTransform,
    ImplicitSchemaPayloadBuilder,
    SchemaAwareExternalTransform,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurebridge.expansion_service.interceptor import WATCH_SLOTS
from tests.expansion_helpers import (
    ANALYZE_ID,
    FQN_URN,
    PREDICT_ID,
    SCHEMA_TRANSFORM_URN,
    SPEC,
    TRANSFORM_ID,
    Raw,
    assert_safe,
    channel,
    expand,
    expansion_request,
    health_status,
    schema_transform_spec,
    start_server,
)
from tests.repo import REPO_ROOT

pytestmark = pytest.mark.slow

PICKLED_URN = "beam:transform:pickled_python:v1"


# ---------------------------------------------------------------------------
# The shared server for this module.


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("expansion"))
    with start_server(tmp, "--environment", "external", "--environment_config", "localhost:50123") as s:
        yield s


@pytest.fixture(autouse=True)
def still_healthy(request):
    """After every test, the shared server is alive and SERVING."""
    yield
    if "server" in request.fixturenames:
        s = request.getfixturevalue("server")
        assert s.proc.poll() is None, s.log()[-3000:]
        assert health_status(s.address) == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def marker_dir(tmp_path_factory):
    """Where a refused payload would have created a file, had it been run."""
    return str(tmp_path_factory.mktemp("markers"))


# ---------------------------------------------------------------------------
# Discovery and a successful expansion.


def test_discovery_lists_the_offered_schema_transforms(server):
    configs = {c.identifier: c for c in SchemaAwareExternalTransform.discover(server.address)}
    assert set(configs) == {ANALYZE_ID, TRANSFORM_ID, PREDICT_ID}
    fields = {i: list(typing.get_type_hints(c.configuration_schema).items()) for i, c in configs.items()}
    assert fields[ANALYZE_ID] == [("spec", str), ("output_dir", str)]
    assert fields[TRANSFORM_ID] == [("analyzed_dir", str)]
    assert fields[PREDICT_ID] == [("model_dir", str)]
    for c in configs.values():
        assert c.inputs == ["input"] and c.outputs == ["output", "rejected"]
        assert "featurebridge" in c.description


@pytest.fixture(scope="module")
def analyze_request(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("resp") / "never_written")
    return expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=out))


@pytest.fixture(scope="module")
def analyze_response(server, analyze_request):
    return expand(server.address, analyze_request)


def test_expansion_outputs_use_the_row_coder(analyze_request, analyze_response):
    resp = analyze_response
    assert resp.error == ""
    assert set(resp.transform.outputs) == {"output", "rejected"}
    assert dict(resp.transform.inputs) == {"input": "in"}
    for tag, pid in resp.transform.outputs.items():
        coder = resp.components.coders[resp.components.pcollections[pid].coder_id]
        assert coder.spec.urn == "beam:coder:row:v1", tag
        schema = schema_pb2.Schema.FromString(coder.spec.payload)
        names = [f.name for f in schema.fields]
        if tag == "output":
            assert names == ["id", "x_zscore", "x_bucketize", "c_vocabulary", "y"]
        else:
            assert names == ["source", "row", "column", "value", "reason"]
        assert not any(f.type.WhichOneof("type_info") == "logical_type" for f in schema.fields)
    # Every new component id is in the caller's namespace (Beam clients require it).
    for kind in ("coders", "transforms", "pcollections", "environments", "windowing_strategies"):
        for cid in getattr(resp.components, kind):
            assert cid.startswith("test") or cid in getattr(analyze_request.components, kind), (kind, cid)


def test_expansion_carries_the_configured_environment_with_staged_artifacts(server, analyze_response):
    resp = analyze_response
    env_ids = {t.environment_id for t in resp.components.transforms.values() if t.environment_id}
    assert env_ids
    for env_id in env_ids:
        env = resp.components.environments[env_id]
        assert env.urn == "beam:env:external:v1"
        assert beam_runner_api_pb2.ExternalPayload.FromString(env.payload).endpoint.url == "localhost:50123"
        staged = {}
        for dep in env.dependencies:
            assert dep.type_urn == "beam:artifact:type:file:v1"
            assert dep.role_urn == "beam:artifact:role:staging_to:v1"
            payload = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload)
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
            assert payload.path == "featurebridge-artifact:" + payload.sha256  # an opaque id, not a path
            staged[name] = (dep, payload.sha256)
        assert set(staged) == {"featurebridge-0.1.0.tar.gz", "extra_packages.txt"}
    # The artifacts are served by id and are what they claim to be.
    with channel(server.address) as ch:
        stub = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(ch)
        resolved = stub.ResolveArtifacts(beam_artifact_api_pb2.ResolveArtifactsRequest(
            artifacts=[d for d, _ in staged.values()]), timeout=10)
        assert len(resolved.replacements) == 2
        blobs = {}
        for name, (dep, sha) in staged.items():
            data = b"".join(r.data for r in stub.GetArtifact(beam_artifact_api_pb2.GetArtifactRequest(artifact=dep), timeout=30))
            assert hashlib.sha256(data).hexdigest() == sha
            blobs[name] = data
    assert blobs["extra_packages.txt"].decode().split() == ["featurebridge-0.1.0.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(blobs["featurebridge-0.1.0.tar.gz"]), mode="r:gz") as tar:
        names = tar.getnames()
    assert "featurebridge-0.1.0/transforms/xlang.py" in names
    assert "featurebridge-0.1.0/expansion_service/server.py" in names


def test_request_ids_are_logged(server, analyze_response):
    import re

    log = server.log()
    assert "/org.apache.beam.model.expansion.v1.ExpansionService/Expand from" in log
    assert "Expand beam:schematransform:org.featurebridge:analyze_and_transform:v1" in log
    # The id a caller is given is the one its request is logged under.
    resp = expand(server.address, expansion_request(schema_transform_spec("beam:schematransform:org.example:nope:v1")))
    rid = re.search(r"request id ([0-9a-f]{12})", resp.error).group(1)
    lines = [line for line in server.log().splitlines() if f"[{rid}]" in line]
    assert any("ExpansionService/Expand from" in line for line in lines), lines
    assert any("Expand refused" in line for line in lines), lines


# ---------------------------------------------------------------------------
# Refusals.


class _Boom:
    """Unpickling (or decoding) this creates a marker file: proof the server ran it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _client_error(transform, address) -> str:
    with pytest.raises(RuntimeError) as info:
        with beam.Pipeline() as p:  # Expansion happens at apply time; nothing runs.
            _ = p | beam.Create([Raw("1", 1.0, "a", 1)]).with_output_types(Raw) | transform
    message = str(info.value)
    assert_safe(message)
    return message


def test_pickled_transform_urn_is_refused_without_unpickling(server, marker_dir):
    import pickle

    marker = os.path.join(marker_dir, "pickled")
    transform = ExternalTransform(PICKLED_URN, pickle.dumps(_Boom(marker)), server.address)
    message = _client_error(transform, server.address)
    assert "transform URN 'beam:transform:pickled_python:v1' is not accepted" in message
    assert ANALYZE_ID in message and "featurebridge.transforms.xlang.TransformRows" in message
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "constructor",
    [
        "__callable__",
        "__constructor__",
        "tensorflow_transform.analyzers.os.system",
        "os.system",
        "featurebridge.transforms.xlang.os.system",
        "featurebridge.transforms.xlang.AnalyzeAndTransformRows.__init__",
        "apache_beam.Map",
        "featurebridge.transforms.xlang.*",
    ],
)
def test_fully_qualified_names_outside_the_allowlist_are_refused(server, constructor):
    transform = ExternalTransform(
        FQN_URN,
        ImplicitSchemaPayloadBuilder({"constructor": constructor, "kwargs": beam.Row(source="lambda pcoll: pcoll")}),
        server.address,
    )
    message = _client_error(transform, server.address)
    assert f"fully qualified name {constructor!r} is not allowed" in message
    assert "featurebridge.transforms.xlang.AnalyzeAndTransformRows" in message


def _marking_source(marker: str, value: str) -> str:
    """Python source that, when evaluated, creates ``marker.<pid>``. Beam's
    client evaluates it once itself (PythonCallableWithSource does), so only
    markers from other processes count."""
    return f"(open({marker!r} + '.' + str(__import__('os').getpid()), 'w').close(), {value})[1]"


def _run_elsewhere(marker: str) -> List[str]:
    import glob

    return [m for m in glob.glob(marker + ".*") if not m.endswith(f".{os.getpid()}")]


@pytest.mark.parametrize("constructor", ["__callable__", "featurebridge.transforms.xlang.TransformRows"])
def test_python_callable_payloads_are_refused_before_decoding(server, marker_dir, constructor):
    from apache_beam.utils.python_callable import PythonCallableWithSource

    marker = os.path.join(marker_dir, f"callable_{constructor}")
    source = _marking_source(marker, "lambda pcoll: pcoll")
    transform = ExternalTransform(
        FQN_URN,
        ImplicitSchemaPayloadBuilder({"constructor": constructor, "kwargs": beam.Row(source=PythonCallableWithSource(source))}),
        server.address,
    )
    message = _client_error(transform, server.address)
    assert "beam:logical_type:python_callable:v1" in message and "never decodes" in message
    assert _run_elsewhere(marker) == []


def test_python_callable_in_a_schema_transform_config_is_refused(server, marker_dir):
    from apache_beam.utils.python_callable import PythonCallableWithSource

    marker = os.path.join(marker_dir, "callable_config")
    source = _marking_source(marker, "'x'")
    transform = SchemaAwareExternalTransform(ANALYZE_ID, server.address, spec=PythonCallableWithSource(source), output_dir="/tmp/x")
    message = _client_error(transform, server.address)
    assert "python_callable" in message
    assert _run_elsewhere(marker) == []


def test_python_any_and_pickled_coders_in_inputs_are_refused(server, marker_dir):
    import pickle

    from apache_beam.typehints.schemas import PYTHON_ANY_URN

    # An input PCollection whose coder is a pickled Python coder.
    marker = os.path.join(marker_dir, "coder")
    pickled = beam_runner_api_pb2.Coder(spec=beam_runner_api_pb2.FunctionSpec(
        urn="beam:coder:pickled_python:v1", payload=pickle.dumps(_Boom(marker))))
    spec = schema_transform_spec(TRANSFORM_ID, analyzed_dir="/nonexistent")
    resp = expand(server.address, expansion_request(spec, extra_coders={"evil": pickled}, input_coder_id="evil"))
    assert "input coder 'beam:coder:pickled_python:v1' is not allowed" in resp.error
    assert_safe(resp.error)
    assert not os.path.exists(marker)
    # A dangling coder id (Beam would unpickle the id string itself).
    resp = expand(server.address, expansion_request(spec, input_coder_id="not_defined"))
    assert "is referenced but not defined" in resp.error
    # A Row input whose schema nests the pythonsdk_any logical type.
    any_schema = schema_pb2.Schema(id="s", fields=[schema_pb2.Field(name="a", type=schema_pb2.FieldType(
        array_type=schema_pb2.ArrayType(element_type=schema_pb2.FieldType(
            logical_type=schema_pb2.LogicalType(urn=PYTHON_ANY_URN))))) ])
    row_coder = beam_runner_api_pb2.Coder(spec=beam_runner_api_pb2.FunctionSpec(
        urn="beam:coder:row:v1", payload=any_schema.SerializeToString()))
    resp = expand(server.address, expansion_request(spec, extra_coders={"anyrow": row_coder}, input_coder_id="anyrow"))
    assert "beam:logical:pythonsdk_any:v1" in resp.error and "never decodes" in resp.error


def _artifact(type_urn: str, payload: bytes) -> beam_runner_api_pb2.ArtifactInformation:
    return beam_runner_api_pb2.ArtifactInformation(type_urn=type_urn, type_payload=payload,
                                                   role_urn="beam:artifact:role:staging_to:v1")


@pytest.mark.parametrize(
    "artifact",
    [
        _artifact("beam:artifact:type:file:v1", beam_runner_api_pb2.ArtifactFilePayload(path="/etc/hostname").SerializeToString()),
        _artifact("beam:artifact:type:file:v1", beam_runner_api_pb2.ArtifactFilePayload(path="../setup.py").SerializeToString()),
        _artifact("beam:artifact:type:file:v1", beam_runner_api_pb2.ArtifactFilePayload(path=os.path.join(REPO_ROOT, "setup.py")).SerializeToString()),
        _artifact("beam:artifact:type:file:v1", beam_runner_api_pb2.ArtifactFilePayload(path="file:///etc/passwd").SerializeToString()),
        _artifact("beam:artifact:type:file:v1", beam_runner_api_pb2.ArtifactFilePayload(path="featurebridge-artifact:../../etc/passwd").SerializeToString()),
        _artifact("beam:artifact:type:url:v1", beam_runner_api_pb2.ArtifactUrlPayload(url="http://169.254.169.254/latest/meta-data").SerializeToString()),
        _artifact("beam:artifact:type:url:v1", beam_runner_api_pb2.ArtifactUrlPayload(url="file:///etc/passwd").SerializeToString()),
        _artifact("beam:artifact:type:file:v1", b"\xff\xfe garbage"),
    ],
    ids=["abs-path", "dotdot", "repo-file", "file-url", "id-prefix-walk", "http-url", "file-url-type", "garbage"],
)
def test_artifact_requests_for_anything_not_staged_are_refused(server, artifact):
    with channel(server.address) as ch:
        stub = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            b"".join(r.data for r in stub.GetArtifact(beam_artifact_api_pb2.GetArtifactRequest(artifact=artifact), timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "only the artifacts this service staged" in info.value.details()
        assert_safe(info.value.details())
        with pytest.raises(grpc.RpcError) as info:
            stub.ResolveArtifacts(beam_artifact_api_pb2.ResolveArtifactsRequest(artifacts=[artifact]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_garbage_bytes_and_malformed_protos_are_refused(server):
    with channel(server.address) as ch:
        for method in ("Expand", "DiscoverSchemaTransform"):
            raw = ch.unary_unary(f"/org.apache.beam.model.expansion.v1.ExpansionService/{method}",
                                 request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as info:
                raw(b"\xff\xff\xff\xff\x0fnot a protobuf", timeout=10)
            assert info.value.code() == grpc.StatusCode.INTERNAL, method
            assert_safe(info.value.details() or "deserialize")
    bad_payload = beam_runner_api_pb2.FunctionSpec(urn=SCHEMA_TRANSFORM_URN, payload=b"\xff\xff\xff\xff")
    resp = expand(server.address, expansion_request(bad_payload))
    assert "the SchemaTransformPayload is not a valid protobuf message" in resp.error
    resp = expand(server.address, expansion_request(beam_runner_api_pb2.FunctionSpec(urn=FQN_URN, payload=b"\xff\xff\xff\xff")))
    assert "the ExternalConfigurationPayload is not a valid protobuf message" in resp.error
    assert_safe(resp.error)
    # A valid schema with Row bytes that do not match it.
    spec = schema_transform_spec(TRANSFORM_ID, analyzed_dir="/x")
    payload = external_transforms_pb2.SchemaTransformPayload.FromString(spec.payload)
    payload.configuration_row = b"\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    resp = expand(server.address, expansion_request(beam_runner_api_pb2.FunctionSpec(urn=SCHEMA_TRANSFORM_URN, payload=payload.SerializeToString())))
    assert "the Row bytes do not match the Row schema" in resp.error
    assert_safe(resp.error)


def test_unknown_identifiers_and_bad_configs_name_what_is_allowed(server, tmp_path):
    resp = expand(server.address, expansion_request(schema_transform_spec("beam:schematransform:org.featurebridge:evil:v1", spec="x")))
    assert "is not offered" in resp.error and ANALYZE_ID in resp.error
    resp = expand(server.address, expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=str(tmp_path / "o"), extra="1")))
    assert "unknown field(s) ['extra']" in resp.error and "['spec', 'output_dir']" in resp.error
    resp = expand(server.address, expansion_request(schema_transform_spec(ANALYZE_ID, spec="columns: 5", output_dir=str(tmp_path / "o"))))
    assert "refused the request" in resp.error and "spec" in resp.error and "columns" in resp.error
    resp = expand(server.address, expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir="relative/dir")))
    assert "'output_dir'" in resp.error and "use an absolute path strictly inside one of them" in resp.error
    resp = expand(server.address, expansion_request(schema_transform_spec(TRANSFORM_ID, analyzed_dir=str(tmp_path))))
    assert "analyzed_dir:" in resp.error and "is not an analyze output" in resp.error
    resp = expand(server.address, expansion_request(schema_transform_spec(PREDICT_ID, model_dir=str(tmp_path))))
    assert "is not a featurebridge model" in resp.error

    class Partial(typing.NamedTuple):
        id: Optional[str]
        x: Optional[float]

    beam.coders.registry.register_coder(Partial, beam.coders.RowCoder)
    resp = expand(server.address, expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=str(tmp_path / "o")), input_type=Partial))
    assert "lack field(s) ['c', 'y']" in resp.error
    for message in [resp.error]:
        assert_safe(message)


# ---------------------------------------------------------------------------
# A restricted server: small limits, a token, graceful drain.

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("limited"))
    os.makedirs(os.path.join(tmp, "allowed"))
    with start_server(tmp, "--environment", "embedded", "--no_stage_project", "--max_concurrent_rpcs", "2",
                      "--allowed_root", os.path.join(tmp, "allowed"),
                      "--max_request_bytes", str(1 << 20), "--grace_seconds", "60",
                      env={"FEATUREBRIDGE_EXPANSION_TOKEN": TOKEN}, name="limited") as s:
        yield s


def _discover(address: str, token: Optional[str] = TOKEN, timeout: float = 10):
    with channel(address, token) as ch:
        return beam_expansion_api_pb2_grpc.ExpansionServiceStub(ch).DiscoverSchemaTransform(
            beam_expansion_api_pb2.DiscoverSchemaTransformRequest(), timeout=timeout)


def test_token_is_required_when_configured(limited):
    with pytest.raises(grpc.RpcError) as info:
        _discover(limited.address, token=None)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        _discover(limited.address, token="wrong")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert len(_discover(limited.address).schema_transform_configs) == 3
    assert health_status(limited.address) == health_pb2.HealthCheckResponse.SERVING  # probes need no token
    assert TOKEN not in limited.log()


def test_directories_outside_the_allowed_roots_are_refused(limited, tmp_path):
    for outside in ["/etc", str(tmp_path / "o"), "/tmp/../etc/x"]:
        resp = expand(limited.address, expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=outside)), token=TOKEN)
        assert "'output_dir' is outside the directories this service allows" in resp.error, resp.error
        assert_safe(resp.error)
    resp = expand(limited.address, expansion_request(schema_transform_spec(TRANSFORM_ID, analyzed_dir="/etc")), token=TOKEN)
    assert "'analyzed_dir' is outside the directories this service allows" in resp.error
    assert health_status(limited.address) == health_pb2.HealthCheckResponse.SERVING


def test_oversized_messages_are_refused(limited):
    big = schema_transform_spec(ANALYZE_ID, spec="#" * (2 << 20) + SPEC, output_dir="/tmp/never")
    with pytest.raises(grpc.RpcError) as info:
        expand(limited.address, expansion_request(big), token=TOKEN)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert health_status(limited.address) == health_pb2.HealthCheckResponse.SERVING


def _burst(fn, n: int) -> List[grpc.StatusCode]:
    """Calls fn from n threads at once; the status code of each call."""
    codes: List[grpc.StatusCode] = []
    lock = threading.Lock()

    def one():
        try:
            fn()
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return codes


def test_more_concurrent_requests_than_the_bound_get_resource_exhausted(limited):
    # Hold both work slots with two real Expands (TFT tracing takes seconds), then burst.
    allowed = os.path.join(os.path.dirname(limited.log_path), "allowed")
    expand_marker = "Expand beam:schematransform:org.featurebridge:analyze_and_transform:v1"
    seen_before = limited.log().count(expand_marker)
    responses = []

    def expand_call(i):
        request = expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=os.path.join(allowed, f"burst{i}")))
        responses.append(expand(limited.address, request, token=TOKEN))

    holders = [threading.Thread(target=expand_call, args=(i,)) for i in range(2)]
    for t in holders:
        t.start()
    deadline = time.monotonic() + 60
    while limited.log().count(expand_marker) < seen_before + 2:
        assert time.monotonic() < deadline, limited.log()[-2000:]
        time.sleep(0.02)
    codes = _burst(lambda: _discover(limited.address), 6)
    for t in holders:
        t.join(120)
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 6
    assert [r.error for r in responses] == ["", ""]
    assert "refused: 2 work RPCs already in flight" in limited.log()

    # Watch streams have slots of their own: they can fill those, never the
    # work slots nor a health Check's.
    ch = channel(limited.address, TOKEN)
    watches = []
    try:
        health_stub = health_pb2_grpc.HealthStub(ch)
        for _ in range(WATCH_SLOTS):
            stream = health_stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            next(stream)  # the first status: the RPC is now in flight
            watches.append(stream)
        with pytest.raises(grpc.RpcError) as info:
            next(health_stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "health Watch streams are already in flight" in info.value.details()
        assert len(_discover(limited.address).schema_transform_configs) == 3
        assert health_status(limited.address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        for stream in watches:
            stream.cancel()
        ch.close()
    # Without the token a Watch stream is refused; a Check (a probe) is not.
    with channel(limited.address) as anonymous:
        with pytest.raises(grpc.RpcError) as info:
            next(health_pb2_grpc.HealthStub(anonymous).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert health_status(limited.address) == health_pb2.HealthCheckResponse.SERVING

    # A burst past the bound now gets only OK or RESOURCE_EXHAUSTED, and the server stays up.
    results = _burst(lambda: _discover(limited.address), 12)
    assert len(results) == 12
    assert set(results) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert grpc.StatusCode.OK in results
    assert limited.proc.poll() is None
    assert health_status(limited.address) == health_pb2.HealthCheckResponse.SERVING


def test_sigterm_drains_in_flight_requests_then_exits(limited, tmp_path):
    """Last test of the module on `limited`: it stops the server."""
    allowed = os.path.join(os.path.dirname(limited.log_path), "allowed")  # the server's --allowed_root
    request = expansion_request(schema_transform_spec(ANALYZE_ID, spec=SPEC, output_dir=os.path.join(allowed, "drain")))
    result = {}

    def call():
        try:
            result["response"] = expand(limited.address, request, token=TOKEN)
        except grpc.RpcError as e:
            result["error"] = e

    marker = "Expand beam:schematransform:org.featurebridge:analyze_and_transform:v1"
    seen_before = limited.log().count(marker)
    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 60
    while limited.log().count(marker) == seen_before:
        assert time.monotonic() < deadline, limited.log()[-2000:]
        time.sleep(0.05)
    limited.proc.send_signal(signal.SIGTERM)
    while "Draining" not in limited.log():
        assert time.monotonic() < deadline + 60, limited.log()[-2000:]
        time.sleep(0.05)
    if thread.is_alive():  # the Expand is still in flight: new work is turned away meanwhile
        with pytest.raises(grpc.RpcError) as info:
            _discover(limited.address)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in info.value.details()
        assert health_status(limited.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    thread.join(120)
    assert "error" not in result, result.get("error")
    assert result["response"].error == ""
    assert limited.proc.wait(timeout=60) == 0
    log = limited.log()
    assert "Received SIGTERM" in log and "Draining" in log and "Stopped" in log


# ---------------------------------------------------------------------------
# TLS (server certificate).


def _self_signed(tmp_dir: str):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(tmp_dir, "cert.pem"), os.path.join(tmp_dir, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_server_certificate(tmp_path):
    cert, key = _self_signed(str(tmp_path))
    with start_server(str(tmp_path), "--environment", "embedded", "--no_stage_project",
                      "--tls_cert", cert, "--tls_key", key, name="tls") as s:
        with open(cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel(s.address, creds) as ch:
            response = beam_expansion_api_pb2_grpc.ExpansionServiceStub(ch).DiscoverSchemaTransform(
                beam_expansion_api_pb2.DiscoverSchemaTransformRequest(), timeout=10)
        assert ANALYZE_ID in response.schema_transform_configs
        with pytest.raises(grpc.RpcError) as info:  # plaintext is not served
            _discover(s.address, token=None, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "TLS" in s.log()
