"""The gRPC servicers: Beam's Expansion API and the artifact retrieval
service. (Health is grpc_health's own servicer, set up by the server.)

`ExpansionServicer.Expand` passes the request through the gate (components
first, then the payload), builds the stage and returns its expansion in the
service's environment. Every failure becomes an error string: a caller error
(a `FeaturebridgeError`) is returned as its message, anything else as a short
generic message with the request id, never a traceback or a server path; the
details go to the log under that id.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

import grpc

from featurebridge.expansion_service import gate, registry
from featurebridge.expansion_service.artifacts import ArtifactStore
from featurebridge.expansion_service.gate import RefusedError
from featurebridge.expansion_service.interceptor import request_id

__all__ = ["ArtifactServicer", "ExpansionServicer", "error_message"]

_LOG = logging.getLogger(__name__)


def error_message(rid: str, error: BaseException) -> str:
    """What a caller is told about `error`: its message when it is a caller
    error (`gate.is_caller_error`), else only its class name and the request id."""
    if gate.is_caller_error(error):
        return f"featurebridge expansion service refused the request (request id {rid}): {error}"
    return (
        f"featurebridge expansion service could not expand the transform (request id {rid}): "
        f"internal {type(error).__name__}; the server log has the details under this request id."
    )


class ExpansionServicer:
    """Expand + DiscoverSchemaTransform for the allowlisted stages.

    Args:
      environment: the Beam Environment every expanded transform gets.
      options: PipelineOptions of the construction pipeline (default: sdk_location=container).
      allowed_roots: when non-empty, callers' directories must lie under one of these.
    """

    def __init__(self, environment, options=None, allowed_roots: Sequence[str] = ()):
        from apache_beam.options.pipeline_options import PipelineOptions

        self._environment = environment
        self._allowed_roots = tuple(allowed_roots)
        self._options = options or PipelineOptions(sdk_location="container")
        self._construct_lock = threading.Lock()

    def Expand(self, request, context=None):
        from apache_beam.portability.api import beam_expansion_api_pb2

        rid = request_id()
        try:
            response = self._expand(request, rid)
        except Exception as e:  # Every failure becomes a safe message.
            if gate.is_caller_error(e):
                _LOG.warning("[%s] Expand refused: %s", rid, e)
            else:
                _LOG.exception("[%s] Expand failed", rid)
            return beam_expansion_api_pb2.ExpansionResponse(error=error_message(rid, e))
        return response

    def _expand(self, request, rid: str):
        import apache_beam as beam
        from apache_beam.portability.api import beam_expansion_api_pb2
        from apache_beam.runners import pipeline_context
        from apache_beam.transforms import external

        # Components first (nothing of the caller's is decoded before it is
        # checked), then the payload, whose constructor validates the config.
        pruned = gate.prune_request(request)
        entry, transform = gate.build_transform(request.transform, self._allowed_roots)
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
        gate.check_input_count(entry, list(inputs))
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
            if coder.spec.urn != gate.ROW_CODER_URN:
                raise RuntimeError(f"output {tag} would use coder {coder.spec.urn}, not {gate.ROW_CODER_URN}")
        return beam_expansion_api_pb2.ExpansionResponse(
            components=proto.components, transform=transform_proto, requirements=proto.requirements
        )

    def DiscoverSchemaTransform(self, request, context=None):
        from apache_beam.portability.api import beam_expansion_api_pb2
        from apache_beam.typehints.schemas import named_tuple_to_schema

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
    GetArtifact accept only artifacts the store holds; anything else gets
    INVALID_ARGUMENT naming what is served."""

    CHUNK = 1 << 20

    def __init__(self, store: ArtifactStore):
        self._store = store

    def ResolveArtifacts(self, request, context):
        from apache_beam.portability.api import beam_artifact_api_pb2

        try:
            for artifact in request.artifacts:
                self._store.lookup(artifact)
        except RefusedError as e:
            _LOG.warning("[%s] ResolveArtifacts refused: %s", request_id(), e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return beam_artifact_api_pb2.ResolveArtifactsResponse(replacements=request.artifacts)

    def GetArtifact(self, request, context):
        from apache_beam.portability.api import beam_artifact_api_pb2

        try:
            staged = self._store.lookup(request.artifact)
        except RefusedError as e:
            _LOG.warning("[%s] GetArtifact refused: %s", request_id(), e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        _LOG.info("[%s] serving artifact %s (%s)", request_id(), staged.artifact_id, staged.staged_name)
        with open(staged.path, "rb") as f:
            for block in iter(lambda: f.read(self.CHUNK), b""):
                yield beam_artifact_api_pb2.GetArtifactResponse(data=block)
