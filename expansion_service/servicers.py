"""The gRPC servicers: Beam's Expansion API and the artifact retrieval
service. (Health is grpc_health's own servicer, set up by the server.)

`ExpansionServicer.Expand` passes the request through the gate (names,
components, then the payload, decoded but not constructed), confines its
directories to the allowed roots, reserves its output directory, admits it
under the memory watermark and hands it to the `workers.Constructor`, which
builds it in a process that is killed past the deadline or memory budget.
Every failure becomes an error string: a caller error (a
`FeaturebridgeError`) is returned as its message, anything else as a short
generic message with the request id, never a traceback or a server path;
the details go to the log under that id.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence, Tuple

import grpc

from featurebridge.expansion_service import gate, registry
from featurebridge.expansion_service.artifacts import ArtifactStore
from featurebridge.expansion_service.gate import RefusedError
from featurebridge.expansion_service.interceptor import request_id
from featurebridge.expansion_service.workers import Constructor, WorkStopped
from featurebridge.transforms.errors import excerpt

__all__ = ["ArtifactServicer", "ExpansionServicer", "error_message"]

_LOG = logging.getLogger(__name__)
# The most of an error message a caller gets back.
_MAX_ERROR_CHARS = 2000


class _InternalError(RuntimeError):
    """The construction worker failed on something other than the caller's input."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def error_message(rid: str, error: BaseException) -> str:
    """What a caller is told about `error`: its message when it is a caller
    error (`gate.is_caller_error`), else only its class name and the request id."""
    if gate.is_caller_error(error):
        text = str(error)
        if len(text) > _MAX_ERROR_CHARS:
            text = f"{text[:_MAX_ERROR_CHARS]}... ({len(text)} chars)"
        return f"featurebridge expansion service refused the request (request id {rid}): {text}"
    name = error.name if isinstance(error, _InternalError) else type(error).__name__
    return (
        f"featurebridge expansion service could not expand the transform (request id {rid}): "
        f"internal {name}; the server log has the details under this request id."
    )


class ExpansionServicer:
    """Expand + DiscoverSchemaTransform for the allowlisted stages.

    Args:
      constructor: builds expansions in a killable worker process.
      allowed_roots: callers' directories must lie strictly inside one of these (non-empty).
      memory_watermark_mb: above this resident size (the service and its
        worker together) new Expands are refused; 0 turns the check off.
    """

    def __init__(self, constructor: Constructor, allowed_roots: Sequence[str], memory_watermark_mb: float = 0.0):
        if not allowed_roots:
            raise RuntimeError("ExpansionServicer needs at least one allowed root")
        self._constructor = constructor
        self._allowed_roots = tuple(allowed_roots)
        self._watermark_mb = memory_watermark_mb
        self._reserved: set = set()
        self._reserve_lock = threading.Lock()

    def Expand(self, request, context=None):
        from apache_beam.portability.api import beam_expansion_api_pb2

        rid = request_id()
        try:
            response = self._expand(request, rid, context)
        except Exception as e:  # Every failure becomes a safe message.
            if gate.is_caller_error(e):
                _LOG.warning("[%s] Expand refused: %s", rid, e)
            elif isinstance(e, _InternalError):
                _LOG.error("[%s] Expand failed in the construction worker: %s (its traceback is above)", rid, e.name)
            else:
                _LOG.exception("[%s] Expand failed", rid)
            return beam_expansion_api_pb2.ExpansionResponse(error=error_message(rid, e))
        return response

    def _expand(self, request, rid: str, context):
        from apache_beam.portability.api import beam_expansion_api_pb2

        # Names and components first (nothing of the caller's is decoded
        # before it is checked), then the payload, decoded, not constructed.
        gate.check_names(request)
        pruned = gate.prune_request(request)
        entry, config = gate.decode_transform(request.transform)
        registry.check_directories(entry.identifier, config, self._allowed_roots)
        _LOG.info("[%s] Expand %s (%s) namespace=%s", rid, entry.identifier, request.transform.spec.urn,
                  excerpt(request.namespace))
        dropped = len(request.output_coder_requests)
        if dropped:
            _LOG.info("[%s] ignoring %d output coder request(s): outputs are Rows", rid, dropped)
        self._admit()
        reserved = self._reserve(entry, config)
        try:
            reply = self._constructor.run(
                rid, entry.identifier, config, pruned.SerializeToString(),
                caller_deadline_s=context.time_remaining() if context is not None else None,
                caller_active=context.is_active if context is not None else (lambda: True),
            )
        except BaseException:
            self._release(reserved)
            raise
        if not reply.get("ok"):
            self._release(reserved)
            if reply.get("caller"):
                raise RefusedError(reply.get("message", "refused"))
            raise _InternalError(str(reply.get("message", "Error")))
        return beam_expansion_api_pb2.ExpansionResponse.FromString(reply["body"])

    def _admit(self) -> None:
        """Refuses new work while the service is above its memory watermark."""
        if not self._watermark_mb:
            return
        now = self._constructor.memory_mb_now()
        if now > self._watermark_mb:
            raise WorkStopped(
                f"the service is using {now:.0f} MB, above its watermark of {self._watermark_mb:.0f} MB "
                "(--memory_watermark_mb); retry later with backoff, or on another instance."
            )

    def _reserve(self, entry, config) -> Tuple[str, ...]:
        """Claims the output directories of this expansion (refusing one an
        earlier expansion of this service was given); a failed expansion
        gives them back (`_release`)."""
        with self._reserve_lock:
            return registry.reserve_outputs(entry.identifier, config, self._reserved)

    def _release(self, reserved: Tuple[str, ...]) -> None:
        with self._reserve_lock:
            self._reserved.difference_update(reserved)

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
