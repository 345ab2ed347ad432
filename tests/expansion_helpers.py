"""What the expansion-service tests share: the stages' identifiers, the spec
and input Row type they use, `start_server`, the service as a separate
process (a thin wrapper over the product's
`featurebridge.expansion_service.process.expansion_service_process`), and a
raw gRPC client: `channel`, `expansion_request`, `schema_transform_spec`,
`expand`, `health_status`, `assert_safe`."""

import contextlib
import os
import typing
from typing import Dict, Iterator, Optional

import apache_beam as beam
import grpc
from apache_beam.portability.api import (
    beam_expansion_api_pb2,
    beam_expansion_api_pb2_grpc,
    beam_runner_api_pb2,
    external_transforms_pb2,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurebridge.expansion_service.process import ExpansionServiceProcess, expansion_service_process
from tests.repo import REPO_ROOT, worker_env

__all__ = [
    "ANALYZE_ID",
    "FQN_URN",
    "PREDICT_ID",
    "Raw",
    "SCHEMA_TRANSFORM_URN",
    "SPEC",
    "TRANSFORM_ID",
    "assert_safe",
    "channel",
    "expand",
    "expansion_request",
    "health_status",
    "schema_transform_spec",
    "start_server",
]

ANALYZE_ID = "beam:schematransform:org.featurebridge:analyze_and_transform:v1"
TRANSFORM_ID = "beam:schematransform:org.featurebridge:transform:v1"
PREDICT_ID = "beam:schematransform:org.featurebridge:predict:v1"
FQN_URN = "beam:transforms:python:fully_qualified_named"
SCHEMA_TRANSFORM_URN = "beam:expansion:payload:schematransform:v1"

SPEC = """
key: id
label: {column: y, kind: binary}
columns:
  - {name: id, type: string}
  - {name: x, type: float, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 3}]}
  - {name: c, type: string, missing: {constant: none}, transforms: [vocabulary]}
  - {name: y, type: int}
"""


class Raw(typing.NamedTuple):
    id: Optional[str]
    x: Optional[float]
    c: Optional[str]
    y: Optional[int]


beam.coders.registry.register_coder(Raw, beam.coders.RowCoder)


@contextlib.contextmanager
def start_server(tmp_dir: str, *args: str, root: Optional[str] = None, own_root: bool = False,
                 env: Optional[Dict[str, str]] = None, name: str = "server") -> Iterator[ExpansionServiceProcess]:
    """Runs the expansion service on a free loopback port until the block ends,
    logging to ``tmp_dir/<name>.log``, with callers' directories confined to
    `root` (``--allowed_root``, unless `args` has its own; None: the parent of
    `tmp_dir`, pytest's base temporary directory for ``tmp_path_factory.mktemp``
    folders; `own_root`: no ``--allowed_root``, the service's own); `env` adds
    variables to the test environment (the checkout on PYTHONPATH)."""
    root_args = []
    if not own_root and "--allowed_root" not in args:
        root_args = ["--allowed_root", root or os.path.dirname(os.path.abspath(tmp_dir))]
    with expansion_service_process(args=[*root_args, *args], env=worker_env(env),
                                   log_path=os.path.join(tmp_dir, f"{name}.log"), cwd=REPO_ROOT) as server:
        yield server


# ---------------------------------------------------------------------------
# A raw gRPC client, as Beam's clients build their requests.


def channel(address: str, token: Optional[str] = None) -> grpc.Channel:
    ch = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 256 << 20),
                                                 ("grpc.max_send_message_length", 256 << 20)])
    if token:
        class _Token(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
            def intercept_unary_unary(self, continuation, details, request):
                return continuation(_Details(details, list(details.metadata or []) + [("authorization", f"Bearer {token}")]), request)

            def intercept_unary_stream(self, continuation, details, request):
                return continuation(_Details(details, list(details.metadata or []) + [("authorization", f"Bearer {token}")]), request)

        ch = grpc.intercept_channel(ch, _Token())
    return ch


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method, self.timeout, self.metadata = d.method, d.timeout, metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


def health_status(address: str, token: Optional[str] = None) -> int:
    with channel(address, token) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status


def expansion_request(transform_spec: beam_runner_api_pb2.FunctionSpec, input_type=Raw, extra_coders=None,
                      input_coder_id: Optional[str] = None) -> beam_expansion_api_pb2.ExpansionRequest:
    """An ExpansionRequest shaped like Beam's clients build it: one input
    PCollection of Rows produced by an Impulse, under namespace 'test'."""
    from apache_beam.runners import pipeline_context
    from apache_beam.transforms.window import GlobalWindows
    from apache_beam.transforms.core import Windowing

    context = pipeline_context.PipelineContext()
    coder_id = input_coder_id or context.coders.get_id(beam.coders.registry.get_coder(input_type))
    ws_id = context.windowing_strategies.get_id(Windowing(GlobalWindows()))
    components = context.to_runner_api()
    components.pcollections["in"].CopyFrom(beam_runner_api_pb2.PCollection(
        unique_name="in", coder_id=coder_id, windowing_strategy_id=ws_id,
        is_bounded=beam_runner_api_pb2.IsBounded.BOUNDED))
    components.transforms["impulse_in"].CopyFrom(beam_runner_api_pb2.PTransform(
        unique_name="impulse_in", spec=beam_runner_api_pb2.FunctionSpec(urn="beam:transform:impulse:v1"),
        outputs={"out": "in"}))
    for cid, coder in (extra_coders or {}).items():
        components.coders[cid].CopyFrom(coder)
    return beam_expansion_api_pb2.ExpansionRequest(
        components=components, namespace="test",
        transform=beam_runner_api_pb2.PTransform(unique_name="xlang", spec=transform_spec, inputs={"input": "in"}))


def schema_transform_spec(identifier: str, **config) -> beam_runner_api_pb2.FunctionSpec:
    from apache_beam.typehints.schemas import named_fields_to_schema

    schema = named_fields_to_schema([(k, type(v)) for k, v in config.items()])
    row = beam.coders.RowCoder(schema).encode(beam.Row(**config))
    payload = external_transforms_pb2.SchemaTransformPayload(
        identifier=identifier, configuration_schema=schema, configuration_row=row)
    return beam_runner_api_pb2.FunctionSpec(urn=SCHEMA_TRANSFORM_URN, payload=payload.SerializeToString())


def expand(address: str, request, token: Optional[str] = None, timeout: float = 120):
    with channel(address, token) as ch:
        return beam_expansion_api_pb2_grpc.ExpansionServiceStub(ch).Expand(request, timeout=timeout)


def assert_safe(message: str) -> None:
    """Caller-facing errors: no traceback, no server file paths."""
    assert message
    assert "Traceback" not in message
    assert REPO_ROOT not in message and "site-packages" not in message and ".py\"" not in message
