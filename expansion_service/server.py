"""The expansion service's lifecycle: its configuration, building the gRPC
server (interceptor, servicers, health), staging, binding (loopback unless
told otherwise), starting, draining and stopping.

featurebridge's restricted Beam expansion service implements Beam's Expansion
API (``Expand``, ``DiscoverSchemaTransform``), an ArtifactRetrievalService
that serves only what this service staged, and the standard gRPC health
service. Unlike Beam's stock Python service it never runs code a caller
sends. What it accepts is decided in `gate` (with the allowlist and the
directory confinement in `registry`); what it stages and serves, in
`artifacts`; the SDK environment of expanded transforms, in `environments`;
request ids, the token, the bounds on RPCs in flight and stream time limits,
in `interceptor`; the RPCs themselves, in `servicers`; construction, in a
worker process that the deadline and memory bounds can kill (`workers`,
`construction`). `process` starts the service as a separate process.

Every caller directory must lie strictly inside an allowed root; with no
``--allowed_root`` the service uses a root of its own
(`default_output_root`), named in its start-up line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Optional, Tuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from featurebridge.expansion_service import registry
from featurebridge.expansion_service.artifacts import ArtifactStore, stage_project
from featurebridge.expansion_service.environments import make_environment
from featurebridge.expansion_service.interceptor import RequestInterceptor, thread_count
from featurebridge.expansion_service.servicers import ArtifactServicer, ExpansionServicer
from featurebridge.expansion_service.workers import Constructor
from featurebridge.transforms.errors import UsageError

__all__ = [
    # This module's own.
    "ExpansionServer",
    "ServerConfig",
    "default_output_root",
]

_LOG = logging.getLogger(__name__)

# The services whose health is reported ("" is the server as a whole).
_HEALTH_SERVICES = (
    "",
    "org.apache.beam.model.expansion.v1.ExpansionService",
    "org.apache.beam.model.job_management.v1.ArtifactRetrievalService",
)


def default_output_root() -> str:
    """The root the service confines callers to when no --allowed_root is
    given: ``$XDG_CACHE_HOME/featurebridge/expansion_outputs`` (by default
    under ``~/.cache``), a directory of the service's own, created 0700."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "featurebridge", "expansion_outputs")


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
        get RESOURCE_EXHAUSTED. Health Checks and Watch streams have slots of their own.
      max_request_bytes: the largest request message, once decompressed.
      max_message_bytes: the largest response message.
      grace_seconds: how long in-flight RPCs may finish after a stop is asked;
        the process is gone within grace + 2 s whatever is in flight.
      expand_timeout_seconds: the most one Expand may take, waiting for the
        construction worker included; past it the work is killed.
      max_expand_memory_mb: how far the construction worker may grow in one Expand.
      memory_watermark_mb: above this resident size (service and worker) new
        Expands are refused; 0: no watermark.
      stream_timeout_seconds: the longest an artifact or health Watch stream runs.
      spec_limits: ``NAME=N`` overrides of the spec limits (see transforms.spec_limits).
      token: a shared token callers send as 'authorization: Bearer <token>'.
      tls_cert, tls_key: PEM files for a TLS server certificate.
      allow_insecure_remote: listen beyond loopback without a token (trusted networks only).
      port_file: where to write the bound port once listening (for supervisors and tests).
      allowed_roots: callers' output_dir/analyzed_dir/model_dir must lie strictly
        inside one of these existing directories; empty: `default_output_root()`.
    """

    host: str = "127.0.0.1"
    port: int = 8097
    environment: str = "docker"
    environment_config: Optional[str] = None
    package: Optional[str] = None
    requirements_file: Optional[str] = None
    stage_project: bool = True
    max_concurrent_rpcs: int = 8
    max_request_bytes: int = 4 << 20
    max_message_bytes: int = 64 << 20
    grace_seconds: float = 30.0
    expand_timeout_seconds: float = 300.0
    max_expand_memory_mb: float = 2048.0
    memory_watermark_mb: float = 4096.0
    stream_timeout_seconds: float = 60.0
    spec_limits: Tuple[str, ...] = ()
    token: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    allow_insecure_remote: bool = False
    port_file: Optional[str] = None
    allowed_roots: Tuple[str, ...] = ()
    work_dir: Optional[str] = field(default=None, repr=False)

    def validate(self) -> None:
        """Checks the settings before anything is bound or staged.

        Raises:
          UsageError (a ValueError): unsafe or inconsistent settings, naming
            the option and what to pass instead.
        """
        if self.max_concurrent_rpcs < 1:
            raise UsageError(f"--max_concurrent_rpcs must be at least 1; got {self.max_concurrent_rpcs}.")
        for flag, value, least in (
            ("--max_request_bytes", self.max_request_bytes, 1024),
            ("--max_message_bytes", self.max_message_bytes, 1024),
            ("--expand_timeout_seconds", self.expand_timeout_seconds, 1),
            ("--max_expand_memory_mb", self.max_expand_memory_mb, 64),
            ("--memory_watermark_mb", self.memory_watermark_mb, 0),
            ("--stream_timeout_seconds", self.stream_timeout_seconds, 1),
            ("--grace_seconds", self.grace_seconds, 0),
        ):
            if value < least:
                raise UsageError(f"{flag} must be at least {least}; got {value}.")
        from featurebridge.transforms.spec_limits import parse_limit_overrides

        parse_limit_overrides(list(self.spec_limits))
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls_cert and --tls_key go together; pass both PEM files.")
        if not _is_loopback(self.host) and not self.token and not self.allow_insecure_remote:
            raise UsageError(
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
        self._constructor: Optional[Constructor] = None
        if config.allowed_roots:
            self.roots = registry.validate_roots(config.allowed_roots)
        else:
            own = default_output_root()
            os.makedirs(own, mode=0o700, exist_ok=True)
            self.roots = registry.validate_roots([own])

    def start(self) -> int:
        """Stages the project, builds the gRPC server, binds and starts it, marks
        it SERVING, and writes ``config.port_file`` when set.

        Returns:
          The bound port.

        Raises:
          RuntimeError: the package to stage cannot be built.
          UsageError: a bad environment kind or a missing environment config.
          OSError: the address cannot be bound, or a file cannot be read or written.
        """
        from apache_beam.portability.api import beam_artifact_api_pb2_grpc, beam_expansion_api_pb2_grpc

        from apache_beam.runners import pipeline_context

        c = self.config
        started = time.monotonic()
        self._interceptor = RequestInterceptor(c.token, c.max_concurrent_rpcs, c.stream_timeout_seconds)
        if c.stage_project:
            stage_project(self.store, self._work_dir, c.package, c.requirements_file)
        environment = make_environment(c.environment, c.environment_config, self.store.artifacts())
        self._constructor = Constructor(
            environment.to_runner_api(pipeline_context.PipelineContext()).SerializeToString(),
            self.roots, c.spec_limits, timeout_s=c.expand_timeout_seconds, memory_mb=c.max_expand_memory_mb,
        )
        self._constructor.start(wait=True)
        options = [
            ("grpc.max_receive_message_length", c.max_request_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        threads = thread_count(c.max_concurrent_rpcs)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="expansion"),
            interceptors=[self._interceptor],
            options=options,
            # The interceptor's bounds keep a thread free for each kind of call;
            # gRPC's own refusal, far above them, is the backstop.
            maximum_concurrent_rpcs=4 * threads,
        )
        beam_expansion_api_pb2_grpc.add_ExpansionServiceServicer_to_server(
            ExpansionServicer(self._constructor, self.roots, c.memory_watermark_mb), self._server
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
        for service in _HEALTH_SERVICES:
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _LOG.info(
            "featurebridge expansion service listening on %s:%d (%s, environment %s %s, %d artifact(s) staged, "
            "max %d concurrent RPCs, max request %d bytes, max response %d bytes, expand timeout %.0f s, "
            "expand memory %.0f MB, watermark %.0f MB, token %s) in %.1f s; outputs confined to %s%s",
            c.host, self.port, "TLS" if c.tls_cert else "plaintext", c.environment,
            c.environment_config or "", len(self.store.artifacts()), c.max_concurrent_rpcs,
            c.max_request_bytes, c.max_message_bytes, c.expand_timeout_seconds, c.max_expand_memory_mb,
            c.memory_watermark_mb, "required" if c.token else "off", time.monotonic() - started,
            ", ".join(self.roots), "" if c.allowed_roots else " (the service's own root: pass --allowed_root to choose)",
        )
        if c.port_file:
            _write_atomically(c.port_file, str(self.port))
        return self.port

    def stop(self, grace: Optional[float] = None) -> threading.Event:
        """Stops taking new RPCs (health NOT_SERVING) and lets in-flight ones
        finish within `grace` seconds; returns an event set when done."""
        grace = self.config.grace_seconds if grace is None else grace
        _LOG.info("Draining: no new requests; in-flight requests have %.0f s to finish", grace)
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        # Drain ourselves (until every work RPC has finished sending), then
        # stop what is still being built and let gRPC close the connections.
        self._interceptor.start_draining()
        if not self._interceptor.wait_idle(grace):
            _LOG.warning("Grace period over with requests still running; cancelling them")
        if self._constructor is not None:
            self._constructor.stop()
        self._interceptor.wait_idle(0.5)
        return self._server.stop(0.5)

    def wait(self) -> None:
        """Blocks until the server has stopped."""
        self._server.wait_for_termination()


def _write_atomically(path: str, text: str) -> None:
    """Writes `text` to `path` so that a reader sees all of it or no file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
