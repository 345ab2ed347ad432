"""A restricted Beam expansion service for featurebridge's stages.

Implements Beam's Expansion API (``Expand``, ``DiscoverSchemaTransform``),
an ArtifactRetrievalService that serves only what this service staged, and
the standard gRPC health service. Unlike Beam's stock Python service it never
runs code a caller sends:

- only two transform URNs are accepted: SchemaTransforms by allowlisted
  identifier, and ``fully_qualified_named`` for allowlisted class names; the
  pickled-transform URN and everything else is refused;
- every Row schema in a request (configuration payloads, input coders) is
  walked *before* anything is decoded, and logical types outside a small
  allowlist (``python_callable`` and ``pythonsdk_any`` included) are refused,
  as are coders outside an allowlist (pickled coders included);
- only the input PCollections and their coders/windowing are kept from the
  caller's components; caller transforms and output coder requests are dropped;
- errors returned to callers say what was wrong and what is allowed, never a
  traceback or server path; details go to the log under a request id.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

__all__ = [
    "ALLOWED_CODER_URNS",
    "ALLOWED_LOGICAL_TYPE_URNS",
    "ArtifactStore",
    "ExpansionServer",
    "RefusedError",
    "ServerConfig",
    "build_project_sdist",
    "default_docker_image",
    "logical_type_urns",
]

_LOG = logging.getLogger(__name__)

ARTIFACT_ID_PREFIX = "featurebridge-artifact:"
FILE_ARTIFACT_URN = "beam:artifact:type:file:v1"
STAGING_TO_ROLE_URN = "beam:artifact:role:staging_to:v1"

# Logical types whose Python decoders only build plain values.
ALLOWED_LOGICAL_TYPE_URNS = frozenset(
    {
        "beam:logical_type:millis_instant:v1",
        "beam:logical_type:micros_instant:v1",
        "beam:logical_type:fixed_bytes:v1",
        "beam:logical_type:var_bytes:v1",
        "beam:logical_type:fixed_char:v1",
        "beam:logical_type:var_char:v1",
    }
)

# Coders the service decodes for inputs: standard, language-neutral ones only.
ALLOWED_CODER_URNS = frozenset(
    {
        "beam:coder:bytes:v1",
        "beam:coder:string_utf8:v1",
        "beam:coder:kv:v1",
        "beam:coder:bool:v1",
        "beam:coder:varint:v1",
        "beam:coder:double:v1",
        "beam:coder:iterable:v1",
        "beam:coder:length_prefix:v1",
        "beam:coder:global_window:v1",
        "beam:coder:interval_window:v1",
        "beam:coder:windowed_value:v1",
        "beam:coder:param_windowed_value:v1",
        "beam:coder:row:v1",
        "beam:coder:nullable:v1",
    }
)
ALLOWED_WINDOW_FN_URNS = frozenset(
    {
        "beam:window_fn:global_windows:v1",
        "beam:window_fn:fixed_windows:v1",
        "beam:window_fn:sliding_windows:v1",
        "beam:window_fn:session_windows:v1",
    }
)
ROW_CODER_URN = "beam:coder:row:v1"
IMPULSE_URN = "beam:transform:impulse:v1"
_MAX_SCHEMA_DEPTH = 16

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RefusedError(ValueError):
    """A request is refused; the message is safe to return to the caller."""


# ---------------------------------------------------------------------------
# Schema and component checks (run before anything is decoded).


def logical_type_urns(schema, depth: int = 0) -> Iterable[str]:
    """Every logical type URN used anywhere in a schema_pb2.Schema (nested rows,
    arrays, iterables, maps, logical types' representations and arguments)."""
    if depth > _MAX_SCHEMA_DEPTH:
        raise RefusedError(f"schema nesting deeper than {_MAX_SCHEMA_DEPTH} levels is not allowed.")
    for f in schema.fields:
        yield from _field_type_urns(f.type, depth + 1)


def _field_type_urns(ft, depth: int) -> Iterable[str]:
    if depth > _MAX_SCHEMA_DEPTH:
        raise RefusedError(f"schema nesting deeper than {_MAX_SCHEMA_DEPTH} levels is not allowed.")
    which = ft.WhichOneof("type_info")
    if which == "logical_type":
        yield ft.logical_type.urn
        if ft.logical_type.HasField("representation"):
            yield from _field_type_urns(ft.logical_type.representation, depth + 1)
        if ft.logical_type.HasField("argument_type"):
            yield from _field_type_urns(ft.logical_type.argument_type, depth + 1)
    elif which == "row_type":
        yield from logical_type_urns(ft.row_type.schema, depth + 1)
    elif which in ("array_type", "iterable_type"):
        yield from _field_type_urns(getattr(ft, which).element_type, depth + 1)
    elif which == "map_type":
        yield from _field_type_urns(ft.map_type.key_type, depth + 1)
        yield from _field_type_urns(ft.map_type.value_type, depth + 1)


def check_schema(schema, where: str) -> None:
    """Refuses a schema that uses a logical type outside the allowlist.

    Raises:
      RefusedError: naming the logical type and what is allowed.
    """
    bad = sorted(set(logical_type_urns(schema)) - ALLOWED_LOGICAL_TYPE_URNS)
    if bad:
        raise RefusedError(
            f"{where} uses logical type(s) {bad}, which this service never decodes "
            "(python_callable and pythonsdk_any carry code). Allowed logical types: "
            f"{sorted(ALLOWED_LOGICAL_TYPE_URNS)}; send plain strings and numbers."
        )


def _check_coder(components, coder_id: str, seen: set) -> None:
    if coder_id in seen:
        return
    seen.add(coder_id)
    if coder_id not in components.coders:
        # Beam's PipelineContext would unpickle a dangling coder id: refuse.
        raise RefusedError(f"coder id {coder_id[:80]!r} is referenced but not defined in the components.")
    coder = components.coders[coder_id]
    if coder.spec.urn not in ALLOWED_CODER_URNS:
        raise RefusedError(
            f"input coder {coder.spec.urn[:100]!r} is not allowed; inputs must use the portable "
            f"row coder ({ROW_CODER_URN}) or another standard coder: {sorted(ALLOWED_CODER_URNS)}."
        )
    if coder.spec.urn == ROW_CODER_URN:
        from apache_beam.portability.api import schema_pb2

        check_schema(schema_pb2.Schema.FromString(coder.spec.payload), "an input Row schema")
    for sub in coder.component_coder_ids:
        _check_coder(components, sub, seen)


def prune_request(request):
    """A copy of `request` that keeps only the input PCollections, their
    (checked) coders and windowing strategies, and a synthetic Impulse
    producer per input. Caller transforms, environments and output coder
    requests are dropped: the service sets its own output types.

    Raises:
      RefusedError: an input is undefined or uses a refused coder or window fn.
    """
    from apache_beam.portability.api import beam_expansion_api_pb2, beam_runner_api_pb2

    src = request.components
    out = beam_expansion_api_pb2.ExpansionRequest(
        transform=request.transform, namespace=request.namespace, requirements=request.requirements
    )
    coders: set = set()
    for tag, pid in request.transform.inputs.items():
        if pid not in src.pcollections:
            raise RefusedError(f"input {tag[:80]!r} names PCollection {pid[:80]!r}, which is not in the components.")
        pc = src.pcollections[pid]
        _check_coder(src, pc.coder_id, coders)
        if pc.windowing_strategy_id not in src.windowing_strategies:
            raise RefusedError(f"input {tag[:80]!r} has no windowing strategy in the components.")
        ws = src.windowing_strategies[pc.windowing_strategy_id]
        if ws.window_fn.urn not in ALLOWED_WINDOW_FN_URNS:
            raise RefusedError(
                f"input window fn {ws.window_fn.urn[:100]!r} is not allowed; use one of {sorted(ALLOWED_WINDOW_FN_URNS)}."
            )
        _check_coder(src, ws.window_coder_id, coders)
        out.components.windowing_strategies[pc.windowing_strategy_id].CopyFrom(ws)
        out.components.pcollections[pid].CopyFrom(pc)
        out.components.transforms[f"featurebridge_input_{len(out.components.transforms)}"].CopyFrom(
            beam_runner_api_pb2.PTransform(
                unique_name=f"featurebridge_input_{tag}",
                spec=beam_runner_api_pb2.FunctionSpec(urn=IMPULSE_URN),
                outputs={tag: pid},
            )
        )
    for cid in coders:
        out.components.coders[cid].CopyFrom(src.coders[cid])
    return out


# ---------------------------------------------------------------------------
# Building the requested transform from its payload.


def _decode_row(schema, payload: bytes, where: str):
    check_schema(schema, where)
    for f in schema.fields:
        if not f.name:
            raise RefusedError(f"{where} has a field without a name.")
    from apache_beam import coders

    try:
        return coders.RowCoder(schema).decode(payload)
    except Exception:  # Malformed bytes: say so, never echo decoder internals.
        raise RefusedError(f"{where}: the Row bytes do not match the Row schema sent with them.") from None


def _row_to_dict(row) -> Dict[str, object]:
    if row is None:
        return {}
    if isinstance(row, dict):
        return dict(row)
    return dict(row._asdict())


def build_transform(transform_proto, allowed_roots: Sequence[str] = ()):
    """The PTransform for an allowlisted request, or RefusedError.

    `allowed_roots`, when given, confines every directory in the configuration."""
    from apache_beam.portability.api import external_transforms_pb2

    from featurebridge.expansion_service import registry

    urn = transform_proto.spec.urn
    payload = transform_proto.spec.payload
    if urn == registry.SCHEMA_TRANSFORM_URN:
        try:
            st = external_transforms_pb2.SchemaTransformPayload.FromString(payload)
        except Exception:
            raise RefusedError("the SchemaTransformPayload is not a valid protobuf message.") from None
        entry = registry.by_identifier(st.identifier)
        row = _decode_row(st.configuration_schema, st.configuration_row, f"the configuration of {st.identifier}")
        return entry, entry.build(_row_to_dict(row), allowed_roots)
    if urn == registry.FQN_URN:
        try:
            ext = external_transforms_pb2.ExternalConfigurationPayload.FromString(payload)
        except Exception:
            raise RefusedError("the ExternalConfigurationPayload is not a valid protobuf message.") from None
        row = _decode_row(ext.schema, ext.payload, "the PythonExternalTransform payload")
        constructor = getattr(row, "constructor", None)
        if not isinstance(constructor, str):
            raise RefusedError("the PythonExternalTransform payload has no 'constructor' string field.")
        entry = registry.by_class_name(constructor)
        args = tuple(getattr(row, "args", None) or ())
        kwargs = _row_to_dict(getattr(row, "kwargs", None))
        return entry, entry.build(registry.fqn_config(entry, args, kwargs), allowed_roots)
    raise RefusedError(
        f"transform URN {urn[:120]!r} is not accepted (pickled transforms and arbitrary "
        f"Python are never run here); use {registry.SCHEMA_TRANSFORM_URN} with one of "
        f"{[e.identifier for e in registry.ENTRIES]}, or {registry.FQN_URN} with one of "
        f"{[e.class_name for e in registry.ENTRIES]}."
    )


# ---------------------------------------------------------------------------
# Staged artifacts.


@dataclass
class _Staged:
    artifact_id: str
    path: str
    staged_name: str
    sha256: str


class ArtifactStore:
    """The files this service staged for its environment, served by opaque id.

    The ids (``featurebridge-artifact:<sha256>``) appear as the path of FILE
    artifacts in environments this service returns; retrieval looks the id up
    here and never interprets a caller-supplied string as a path or URL.
    """

    def __init__(self):
        self._by_id: Dict[str, _Staged] = {}

    def add(self, path: str, staged_name: str) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sha = digest.hexdigest()
        artifact_id = ARTIFACT_ID_PREFIX + sha
        self._by_id[artifact_id] = _Staged(artifact_id, os.path.abspath(path), staged_name, sha)
        return artifact_id

    def artifacts(self) -> List[object]:
        """ArtifactInformation protos for an environment's dependencies."""
        from apache_beam.portability.api import beam_runner_api_pb2

        return [
            beam_runner_api_pb2.ArtifactInformation(
                type_urn=FILE_ARTIFACT_URN,
                type_payload=beam_runner_api_pb2.ArtifactFilePayload(path=s.artifact_id, sha256=s.sha256).SerializeToString(),
                role_urn=STAGING_TO_ROLE_URN,
                role_payload=beam_runner_api_pb2.ArtifactStagingToRolePayload(staged_name=s.staged_name).SerializeToString(),
            )
            for s in sorted(self._by_id.values(), key=lambda s: s.staged_name)
        ]

    def lookup(self, artifact) -> _Staged:
        """The staged file an ArtifactInformation names.

        Raises:
          RefusedError: anything but a FILE artifact whose path is one of our ids.
        """
        from apache_beam.portability.api import beam_runner_api_pb2

        allowed = f"only the artifacts this service staged, named by id {sorted(self._by_id)}"
        if artifact.type_urn != FILE_ARTIFACT_URN:
            raise RefusedError(f"artifact type {artifact.type_urn[:80]!r} is not served; this service serves {allowed}.")
        try:
            payload = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload)
        except Exception:
            raise RefusedError(f"the artifact payload is not a valid protobuf message; this service serves {allowed}.") from None
        staged = self._by_id.get(payload.path)
        if staged is None:
            raise RefusedError(f"that artifact is not served (paths and URLs never are); this service serves {allowed}.")
        return staged


def build_project_sdist(dest_dir: str) -> str:
    """Builds this project's sdist from its source tree into `dest_dir`.

    Raises:
      RuntimeError: no setup.py beside the packages (an installed copy): pass
        the package with ``--package`` instead.
    """
    import featurebridge.transforms

    root = os.path.dirname(os.path.dirname(os.path.abspath(featurebridge.transforms.__file__)))
    if not os.path.exists(os.path.join(root, "setup.py")):
        raise RuntimeError(
            "featurebridge's source tree (setup.py) is not available to build the package to "
            "stage; pass --package PATH with a featurebridge sdist or wheel."
        )
    egg_base = tempfile.mkdtemp(prefix="fb_egg_")
    try:
        result = subprocess.run(
            [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", egg_base, "sdist", "--dist-dir", dest_dir],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(egg_base, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"building featurebridge's sdist failed:\n{result.stderr[-2000:]}")
    built = [f for f in os.listdir(dest_dir) if f.endswith(".tar.gz")]
    if len(built) != 1:
        raise RuntimeError(f"expected one sdist in {dest_dir}, found {built}")
    return os.path.join(dest_dir, built[0])


# ---------------------------------------------------------------------------
# Environment.


def default_docker_image() -> str:
    """The SDK harness image built from the project's Dockerfile."""
    from importlib import metadata

    import apache_beam

    try:
        version = metadata.version("featurebridge")
    except metadata.PackageNotFoundError:
        version = "0.1.0"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"featurebridge-beam-sdk:{version}-beam{apache_beam.__version__}-py{py}"


def make_environment(kind: str, config: Optional[str], artifacts: Sequence[object]):
    """A Beam Environment of `kind` (docker|process|external|embedded) with `artifacts`.

    Raises:
      ValueError: unknown kind, or a missing config for process/external.
    """
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners import pipeline_context
    from apache_beam.transforms import environments

    kinds = {"docker": "DOCKER", "process": "PROCESS", "external": "EXTERNAL", "embedded": "beam:env:embedded_python:v1"}
    if kind not in kinds:
        raise ValueError(f"--environment {kind!r} is not supported; use one of {sorted(kinds)}.")
    if kind == "docker":
        config = config or default_docker_image()
    elif kind in ("process", "external") and not config:
        raise ValueError(
            f"--environment {kind} needs --environment_config "
            + ("('{\"command\": \"/path/to/boot\"}')" if kind == "process" else "(the worker pool's host:port)")
        )
    flags = {"environment_type": kinds[kind], "sdk_location": "container"}
    if config:
        flags["environment_config"] = config
    env = environments.Environment.from_options(PipelineOptions(**flags))
    context = pipeline_context.PipelineContext()
    proto = env.to_runner_api(context)
    del proto.dependencies[:]
    proto.dependencies.extend(artifacts)
    return environments.Environment.from_runner_api(proto, context)


# ---------------------------------------------------------------------------
# The servicers.


# Errors whose messages are written for callers (they name the field and what is allowed).
_CALLER_ERRORS = ("RefusedError", "RegistryError", "SpecError", "OutputExistsError", "ModelDirError")
_CALLER_PREFIXES = ("AnalyzeAndTransformRows:", "TransformRows:", "PredictRows:")


def _is_caller_error(error: BaseException) -> bool:
    if type(error).__name__ in _CALLER_ERRORS:
        return True
    return isinstance(error, ValueError) and str(error).startswith(_CALLER_PREFIXES)


def _safe_error(request_id: str, error: BaseException) -> str:
    if _is_caller_error(error):
        return f"featurebridge expansion service refused the request (request id {request_id}): {error}"
    return (
        f"featurebridge expansion service could not expand the transform (request id {request_id}): "
        f"internal {type(error).__name__}; the server log has the details under this request id."
    )


class ExpansionServicer:
    """Expand + DiscoverSchemaTransform for the allowlisted stages."""

    def __init__(self, environment, options=None, allowed_roots: Sequence[str] = ()):
        from apache_beam.options.pipeline_options import PipelineOptions

        self._environment = environment
        self._allowed_roots = tuple(allowed_roots)
        self._options = options or PipelineOptions(sdk_location="container")
        self._construct_lock = threading.Lock()

    def Expand(self, request, context=None):
        from apache_beam.portability.api import beam_expansion_api_pb2

        rid = _request_id.get()
        try:
            response = self._expand(request, rid)
        except Exception as e:  # Every failure becomes a safe message.
            if _is_caller_error(e):
                _LOG.warning("[%s] Expand refused: %s", rid, e)
            else:
                _LOG.exception("[%s] Expand failed", rid)
            return beam_expansion_api_pb2.ExpansionResponse(error=_safe_error(rid, e))
        return response

    def _expand(self, request, rid: str):
        import apache_beam as beam
        from apache_beam.portability.api import beam_expansion_api_pb2
        from apache_beam.runners import pipeline_context
        from apache_beam.transforms import external

        # Components first (nothing of the caller's is decoded before it is
        # checked), then the payload, whose constructor validates the config.
        pruned = prune_request(request)
        entry, transform = build_transform(request.transform, self._allowed_roots)
        _LOG.info("[%s] Expand %s (%s) namespace=%s", rid, entry.identifier, request.transform.spec.urn, request.namespace)
        dropped = dict(request.output_coder_requests)
        if dropped:
            _LOG.info("[%s] ignoring output coder requests %s: outputs are Rows", rid, dropped)
        pipeline = beam.Pipeline(options=self._options)
        context = pipeline_context.PipelineContext(
            pruned.components,
            default_environment=self._environment,
            namespace=request.namespace,
            requirements=request.requirements,
        )
        producers = {
            pid: (context.transforms.get_by_id(tid), tag)
            for tid, t in pruned.components.transforms.items()
            for tag, pid in t.outputs.items()
        }
        inputs = {}
        for tag, pid in request.transform.inputs.items():
            pcoll = context.pcollections.get_by_id(pid)
            pcoll.pipeline = pipeline
            pcoll.producer, pcoll.tag = producers[pid]
            context.pcollections._obj_to_id[pcoll] = pid
            inputs[tag] = pcoll
        if len(inputs) != len(entry.inputs):
            raise RefusedError(
                f"{entry.identifier} takes exactly {len(entry.inputs)} input PCollection "
                f"{list(entry.inputs)}; got {len(inputs)} ({sorted(inputs)[:10]})."
            )
        pvalue = next(iter(inputs.values()))
        # One construction at a time: TFT's tracing and Beam's outer namespace are
        # process-global (two concurrent Expands failed TFT's
        # `assert _OBJECT_TRACKER is None`). Callers past the bound are refused
        # before they get here, so the queue is short.
        with self._construct_lock, external.ExternalTransform.outer_namespace(request.namespace):
            result = pipeline.apply(transform, pvalue, request.transform.unique_name)
            expanded = pipeline._root_transform().parts[-1]
            expanded.outputs = dict(result)
            proto = pipeline.to_runner_api(context=context)
        expanded_id = context.transforms.get_id(expanded)
        transform_proto = proto.components.transforms.pop(expanded_id)
        transform_proto.inputs.clear()
        transform_proto.inputs.update(request.transform.inputs)
        for tid in list(proto.root_transform_ids) + list(pruned.components.transforms):
            proto.components.transforms.pop(tid, None)
        for tag, pid in transform_proto.outputs.items():
            coder = proto.components.coders[proto.components.pcollections[pid].coder_id]
            if coder.spec.urn != ROW_CODER_URN:
                raise RuntimeError(f"output {tag} would use coder {coder.spec.urn}, not {ROW_CODER_URN}")
        return beam_expansion_api_pb2.ExpansionResponse(
            components=proto.components, transform=transform_proto, requirements=proto.requirements
        )

    def DiscoverSchemaTransform(self, request, context=None):
        from apache_beam.portability.api import beam_expansion_api_pb2
        from apache_beam.typehints.schemas import named_tuple_to_schema

        from featurebridge.expansion_service import registry

        response = beam_expansion_api_pb2.DiscoverSchemaTransformResponse()
        for entry in registry.ENTRIES:
            response.schema_transform_configs[entry.identifier].CopyFrom(
                beam_expansion_api_pb2.SchemaTransformConfig(
                    config_schema=named_tuple_to_schema(entry.config),
                    input_pcollection_names=list(entry.inputs),
                    output_pcollection_names=list(entry.outputs),
                    description=entry.description,
                )
            )
        return response


class ArtifactServicer:
    """ArtifactRetrievalService over an `ArtifactStore`: ResolveArtifacts and
    GetArtifact accept only artifacts the store holds."""

    CHUNK = 1 << 20

    def __init__(self, store: ArtifactStore):
        self._store = store

    def ResolveArtifacts(self, request, context):
        from apache_beam.portability.api import beam_artifact_api_pb2

        try:
            for artifact in request.artifacts:
                self._store.lookup(artifact)
        except RefusedError as e:
            _LOG.warning("[%s] ResolveArtifacts refused: %s", _request_id.get(), e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return beam_artifact_api_pb2.ResolveArtifactsResponse(replacements=request.artifacts)

    def GetArtifact(self, request, context):
        from apache_beam.portability.api import beam_artifact_api_pb2

        try:
            staged = self._store.lookup(request.artifact)
        except RefusedError as e:
            _LOG.warning("[%s] GetArtifact refused: %s", _request_id.get(), e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        _LOG.info("[%s] serving artifact %s (%s)", _request_id.get(), staged.artifact_id, staged.staged_name)
        with open(staged.path, "rb") as f:
            for block in iter(lambda: f.read(self.CHUNK), b""):
                yield beam_artifact_api_pb2.GetArtifactResponse(data=block)


# ---------------------------------------------------------------------------
# Request ids, token check, logging.


_HEALTH_PREFIX = "/grpc.health.v1.Health/"
# Health probes (unary Check) need no token; a Watch stream is long-lived, so it
# needs the token like any other call.
_OPEN_METHODS = ("/grpc.health.v1.Health/Check",)
# Health RPCs have slots of their own: a flood of Watch streams can fill these,
# never the slots that Expand, discovery and artifact calls use.
HEALTH_SLOTS = 4


class _RequestInterceptor(grpc.ServerInterceptor):
    """Gives every RPC a request id (logged with method, peer, status and
    time), refuses calls without the token when one is configured, and bounds
    RPCs in flight: ``max_work`` for the service's own calls, ``HEALTH_SLOTS``
    for health checks; past a bound a call gets RESOURCE_EXHAUSTED at once."""

    def __init__(self, token: Optional[str], max_work: int):
        self._token = token
        self._lock = threading.Condition()
        self._in_flight = {"work": 0, "health": 0}
        self._bounds = {"work": max_work, "health": HEALTH_SLOTS}
        self.draining = False

    def wait_idle(self, timeout: float) -> bool:
        """Blocks until no non-health RPC is in flight, or `timeout` passes."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight["work"] == 0, timeout)

    def start_draining(self) -> None:
        """From now on new work RPCs get UNAVAILABLE; health RPCs still run."""
        with self._lock:
            self.draining = True

    def _take_slot(self, kind: str) -> Optional[str]:
        """Counts the RPC in; None, or why it cannot run ("draining", "full").
        Under the lock that start_draining takes, so a drain never misses a call."""
        with self._lock:
            if self.draining and kind == "work":
                return "draining"
            if self._in_flight[kind] >= self._bounds[kind]:
                return "full"
            self._in_flight[kind] += 1
            return None

    def _free_slot(self, kind: str) -> None:
        with self._lock:
            self._in_flight[kind] -= 1
            self._lock.notify_all()

    @contextlib.contextmanager
    def _accounted(self, context, method: str, authorized: bool):
        """Admits the RPC (draining, token, slot) under a new request id, holds
        its slot while it runs, and logs its duration."""
        start = time.monotonic()
        rid = uuid.uuid4().hex[:12]
        _request_id.set(rid)
        kind = "health" if method.startswith(_HEALTH_PREFIX) else "work"
        _LOG.info("[%s] %s from %s", rid, method, context.peer())
        if not authorized:
            _LOG.warning("[%s] refused: missing or wrong token", rid)
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"request id {rid}: this service requires the shared token as metadata "
                "'authorization: Bearer <token>'.",
            )
        refused = self._take_slot(kind)
        if refused == "draining":
            context.abort(grpc.StatusCode.UNAVAILABLE, f"request id {rid}: the service is shutting down; retry on another instance.")
        if refused == "full":
            _LOG.warning("[%s] refused: %d %s RPCs already in flight", rid, self._bounds[kind], kind)
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request id {rid}: {self._bounds[kind]} {'health requests' if kind == 'health' else 'requests'} "
                "are already in flight, the most this service takes at once; retry with backoff.",
            )
        # The slot is freed when gRPC has finished the RPC (response and status
        # sent, or cancelled), not when the handler returns: a drain that waited
        # only for handlers could close a connection under a response still being sent.
        if not context.add_callback(lambda: self._free_slot(kind)):
            self._free_slot(kind)  # already over
        try:
            yield
        finally:
            _LOG.info("[%s] %s done in %.2f s", rid, method, time.monotonic() - start)

    def _authorized(self, details) -> bool:
        if not self._token or details.method in _OPEN_METHODS:
            return True
        import hmac

        for key, value in details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                if hmac.compare_digest(value.encode(), f"Bearer {self._token}".encode()):
                    return True
        return False

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        authorized = self._authorized(details)

        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request, context):
                with self._accounted(context, method, authorized):
                    return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request, context):
                with self._accounted(context, method, authorized):
                    yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
            )
        return handler


# ---------------------------------------------------------------------------
# The server.


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost", "[::1]")


@dataclass
class ServerConfig:
    """How to run the service.

    Attributes:
      host, port: where to listen (port 0 picks one). Loopback by default.
      environment, environment_config: the SDK environment of expanded transforms.
      package: a featurebridge sdist/wheel to stage; None builds one from the source tree.
      requirements_file: an optional requirements.txt to stage beside it.
      stage_project: stage the package at all (off only for embedded environments).
      max_concurrent_rpcs: Expand, discovery and artifact RPCs in flight at once; more
        get RESOURCE_EXHAUSTED. Health RPCs have HEALTH_SLOTS more of their own.
      max_message_bytes: the largest request or response message.
      grace_seconds: how long in-flight RPCs may finish after a stop is asked.
      token: a shared token callers send as 'authorization: Bearer <token>'.
      tls_cert, tls_key: PEM files for a TLS server certificate.
      allow_insecure_remote: listen beyond loopback without a token (trusted networks only).
      port_file: where to write the bound port once listening (for supervisors and tests).
      allowed_roots: when non-empty, callers' output_dir/analyzed_dir/model_dir must lie
        under one of these directories.
    """

    host: str = "127.0.0.1"
    port: int = 8097
    environment: str = "docker"
    environment_config: Optional[str] = None
    package: Optional[str] = None
    requirements_file: Optional[str] = None
    stage_project: bool = True
    max_concurrent_rpcs: int = 8
    max_message_bytes: int = 64 << 20
    grace_seconds: float = 30.0
    token: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    allow_insecure_remote: bool = False
    port_file: Optional[str] = None
    allowed_roots: Tuple[str, ...] = ()
    work_dir: Optional[str] = field(default=None, repr=False)

    def validate(self) -> None:
        """Raises ValueError for unsafe or inconsistent settings."""
        if self.max_concurrent_rpcs < 1:
            raise ValueError(f"--max_concurrent_rpcs must be at least 1; got {self.max_concurrent_rpcs}.")
        if self.max_message_bytes < 1024:
            raise ValueError(f"--max_message_bytes must be at least 1024; got {self.max_message_bytes}.")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls_cert and --tls_key go together; pass both PEM files.")
        if not _is_loopback(self.host) and not self.token and not self.allow_insecure_remote:
            raise ValueError(
                f"--host {self.host} listens beyond loopback: set a shared token "
                "(FEATUREBRIDGE_EXPANSION_TOKEN or --token_file), preferably with --tls_cert/--tls_key, "
                "or pass --allow_insecure_remote on a trusted network."
            )


class ExpansionServer:
    """The running service: start(), then stop(grace) or wait().

    Attributes:
      port: the bound port (after start()).
      store: the staged artifacts.
    """

    def __init__(self, config: ServerConfig):
        config.validate()
        self.config = config
        self.port: Optional[int] = None
        self.store = ArtifactStore()
        self._work_dir = config.work_dir or tempfile.mkdtemp(prefix="fb_expansion_")
        self._server = None
        self._health = None

    def _stage(self) -> None:
        c = self.config
        if not c.stage_project:
            return
        package = c.package or build_project_sdist(os.path.join(self._work_dir, "dist"))
        name = os.path.basename(package)
        self.store.add(package, name)
        listing = os.path.join(self._work_dir, "extra_packages.txt")
        with open(listing, "w", encoding="utf-8") as f:
            f.write(name + "\n")
        self.store.add(listing, "extra_packages.txt")
        if c.requirements_file:
            self.store.add(c.requirements_file, "requirements.txt")

    def start(self) -> int:
        from apache_beam.portability.api import beam_artifact_api_pb2_grpc, beam_expansion_api_pb2_grpc

        c = self.config
        started = time.monotonic()
        self._interceptor = _RequestInterceptor(c.token, c.max_concurrent_rpcs)
        self._stage()
        environment = make_environment(c.environment, c.environment_config, self.store.artifacts())
        options = [
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=c.max_concurrent_rpcs + HEALTH_SLOTS, thread_name_prefix="expansion"),
            interceptors=[self._interceptor],
            options=options,
            # The interceptor's two bounds add up to this; gRPC's own refusal is the backstop.
            maximum_concurrent_rpcs=c.max_concurrent_rpcs + HEALTH_SLOTS,
        )
        beam_expansion_api_pb2_grpc.add_ExpansionServiceServicer_to_server(
            ExpansionServicer(environment, allowed_roots=c.allowed_roots), self._server
        )
        beam_artifact_api_pb2_grpc.add_ArtifactRetrievalServiceServicer_to_server(ArtifactServicer(self.store), self._server)
        self._health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        address = f"{c.host}:{c.port}"
        if c.tls_cert:
            with open(c.tls_key, "rb") as k, open(c.tls_cert, "rb") as crt:
                creds = grpc.ssl_server_credentials([(k.read(), crt.read())])
            self.port = self._server.add_secure_port(address, creds)
        else:
            self.port = self._server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        self._server.start()
        for service in ("", "org.apache.beam.model.expansion.v1.ExpansionService",
                        "org.apache.beam.model.job_management.v1.ArtifactRetrievalService"):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _LOG.info(
            "featurebridge expansion service listening on %s:%d (%s, environment %s %s, %d artifact(s) staged, "
            "max %d concurrent RPCs, max message %d bytes, token %s) in %.1f s",
            c.host, self.port, "TLS" if c.tls_cert else "plaintext", c.environment,
            c.environment_config or "", len(self.store.artifacts()), c.max_concurrent_rpcs,
            c.max_message_bytes, "required" if c.token else "off", time.monotonic() - started,
        )
        return self.port

    def stop(self, grace: Optional[float] = None) -> threading.Event:
        """Stops taking new RPCs (health NOT_SERVING) and lets in-flight ones
        finish within `grace` seconds; returns an event set when done."""
        grace = self.config.grace_seconds if grace is None else grace
        _LOG.info("Draining: no new requests; in-flight requests have %.0f s to finish", grace)
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        # Drain ourselves (until every work RPC has finished sending), then
        # let gRPC close the connections.
        self._interceptor.start_draining()
        if not self._interceptor.wait_idle(grace):
            _LOG.warning("Grace period over with requests still running; cancelling them")
        return self._server.stop(2.0)

    def wait(self) -> None:
        self._server.wait_for_termination()
