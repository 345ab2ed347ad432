"""The gRPC request interceptor: request ids, the token check, and the bounds
on RPCs in flight.

Every RPC gets a request id (logged with method, peer and duration, and
readable by the servicers through `request_id`). When a token is configured,
calls without ``authorization: Bearer <token>`` get UNAUTHENTICATED (health
probes excepted). Work RPCs (Expand, discovery, artifacts), health Checks and
health Watch streams have separate bounds, so neither work nor Watch streams
can take the threads a health Check needs; past a bound a call gets
RESOURCE_EXHAUSTED at once, and while the service drains new work gets
UNAVAILABLE. A response stream (an artifact, a Watch) is cancelled once it
has run for the stream time limit, so a caller that stops reading frees its
slot.
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

__all__ = ["HEALTH_SLOTS", "SPARE_THREADS", "WATCH_SLOTS", "RequestInterceptor", "request_id", "thread_count"]

_LOG = logging.getLogger(__name__)

_CHECK_METHOD = "/grpc.health.v1.Health/Check"
_WATCH_METHOD = "/grpc.health.v1.Health/Watch"
# Health probes (unary Check) need no token; a Watch stream is long-lived, so it
# needs the token like any other call.
_OPEN_METHODS = (_CHECK_METHOD,)
# Health Checks and Watch streams have slots (and threads) of their own: a
# flood of Watch streams or of slow Expands never takes a Check's thread.
HEALTH_SLOTS = 4
WATCH_SLOTS = 4
# Threads beyond the slots, for calls being refused.
SPARE_THREADS = 2


def thread_count(max_work: int) -> int:
    """The server's thread pool size for `max_work` work slots: every slot
    kind gets its threads, plus spares for refusals."""
    return max_work + HEALTH_SLOTS + WATCH_SLOTS + SPARE_THREADS


_KIND_WORDS = {"work": "requests", "check": "health checks", "watch": "health Watch streams"}


def _kind(method: str) -> str:
    return {_CHECK_METHOD: "check", _WATCH_METHOD: "watch"}.get(method, "work")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def request_id() -> str:
    """The id of the RPC this thread is serving ("-" outside an RPC)."""
    return _request_id.get()


class RequestInterceptor(grpc.ServerInterceptor):
    """Gives every RPC a request id (logged with method, peer, status and
    time), refuses calls without the token when one is configured, and bounds
    RPCs in flight: ``max_work`` for the service's own calls, ``HEALTH_SLOTS``
    for health Checks and ``WATCH_SLOTS`` for health Watch streams; past a
    bound a call gets RESOURCE_EXHAUSTED at once. Response streams are
    cancelled after ``stream_timeout_s`` seconds."""

    def __init__(self, token: Optional[str], max_work: int, stream_timeout_s: float = 60.0):
        self._token = token
        self._lock = threading.Condition()
        self._in_flight = {"work": 0, "check": 0, "watch": 0}
        self._bounds = {"work": max_work, "check": HEALTH_SLOTS, "watch": WATCH_SLOTS}
        self._stream_timeout_s = stream_timeout_s
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
        kind = _kind(method)
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
                f"request id {rid}: {self._bounds[kind]} {_KIND_WORDS[kind]} "
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

    @contextlib.contextmanager
    def _time_limited(self, context, method: str):
        """Cancels a response stream that runs past the stream time limit
        (whether its caller stopped reading or the stream never ends)."""
        rid = request_id()

        def cancel():
            _LOG.warning("[%s] %s cancelled: over the %.0f s stream time limit (--stream_timeout_seconds)",
                         rid, method, self._stream_timeout_s)
            context.cancel()

        timer = threading.Timer(self._stream_timeout_s, cancel)
        timer.daemon = True
        timer.start()
        if not context.add_callback(timer.cancel):  # already over
            timer.cancel()
        yield

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
                with self._accounted(context, method, authorized), self._time_limited(context, method):
                    yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
            )
        return handler
