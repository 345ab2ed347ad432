"""The gRPC request interceptor: request ids, the token check, and the bounds
on RPCs in flight.

Every RPC gets a request id (logged with method, peer and duration, and
readable by the servicers through `request_id`). When a token is configured,
calls without ``authorization: Bearer <token>`` get UNAUTHENTICATED (health
probes excepted). Work RPCs (Expand, discovery, artifacts) and health RPCs
have separate bounds; past one a call gets RESOURCE_EXHAUSTED at once, and
while the service drains new work gets UNAVAILABLE.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import uuid
from typing import Optional

import grpc

__all__ = ["HEALTH_SLOTS", "RequestInterceptor", "request_id"]

_LOG = logging.getLogger(__name__)

_HEALTH_PREFIX = "/grpc.health.v1.Health/"
# Health probes (unary Check) need no token; a Watch stream is long-lived, so it
# needs the token like any other call.
_OPEN_METHODS = ("/grpc.health.v1.Health/Check",)
# Health RPCs have slots of their own: a flood of Watch streams can fill these,
# never the slots that Expand, discovery and artifact calls use.
HEALTH_SLOTS = 4

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def request_id() -> str:
    """The id of the RPC this thread is serving ("-" outside an RPC)."""
    return _request_id.get()


class RequestInterceptor(grpc.ServerInterceptor):
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
