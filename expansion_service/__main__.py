"""``python -m featurebridge.expansion_service`` (also ``featurebridge expansion-service``).

    python -m featurebridge.expansion_service --port 8097 [--host 127.0.0.1]
        [--environment docker|process|external|embedded] [--environment_config ...]

Starts featurebridge's restricted Beam expansion service and serves until
SIGTERM or Ctrl-C, then drains in-flight requests for --grace_seconds; the
process is gone within grace + 2 s whatever is still running.
A shared token, if wanted, comes from $FEATUREBRIDGE_EXPANSION_TOKEN or
--token_file (never from the command line, where `ps` would show it).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Optional, Sequence

from featurebridge.expansion_service.environments import ENVIRONMENT_KINDS
from featurebridge.expansion_service.logs import setup_logging
from featurebridge.expansion_service.server import ExpansionServer, ServerConfig
from featurebridge.transforms.errors import UsageError

__all__ = ["main", "parse_args", "print_help", "run"]

_LOG = logging.getLogger("featurebridge.expansion_service")
TOKEN_ENV = "FEATUREBRIDGE_EXPANSION_TOKEN"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="featurebridge expansion-service", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8097, help="port to listen on (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--environment", default="docker", choices=list(ENVIRONMENT_KINDS),
                   help="SDK environment of the expanded transforms (default docker)")
    p.add_argument("--environment_config", default=None,
                   help="docker: image (default the project's SDK image); process: JSON "
                        "{\"command\": ...}; external: worker pool host:port")
    p.add_argument("--package", default=None, help="featurebridge sdist/wheel to stage (default: build one)")
    p.add_argument("--requirements_file", default=None, help="a requirements.txt to stage as well")
    p.add_argument("--no_stage_project", action="store_true", help="stage nothing (image already has featurebridge)")
    p.add_argument("--max_concurrent_rpcs", type=int, default=8,
                   help="Expand, discovery and artifact calls in flight at once (default 8)")
    p.add_argument("--max_request_bytes", type=int, default=4 << 20,
                   help="largest request message, after decompression (default 4 MiB)")
    p.add_argument("--max_message_bytes", type=int, default=64 << 20,
                   help="largest response message (default 64 MiB)")
    p.add_argument("--grace_seconds", type=float, default=30.0,
                   help="on SIGTERM, how long in-flight calls may finish (default 30)")
    p.add_argument("--expand_timeout_seconds", type=float, default=300.0,
                   help="the most one Expand may take; past it its construction is killed (default 300)")
    p.add_argument("--max_expand_memory_mb", type=float, default=2048.0,
                   help="how far construction may grow in one Expand before it is killed (default 2048)")
    p.add_argument("--memory_watermark_mb", type=float, default=4096.0,
                   help="refuse new Expands while the service uses more than this (default 4096; 0: off)")
    p.add_argument("--stream_timeout_seconds", type=float, default=60.0,
                   help="cancel an artifact or health Watch stream after this long (default 60)")
    p.add_argument("--spec_limit", action="append", default=[], metavar="NAME=N",
                   help="raise (or lower) one of the feature-spec limits, e.g. num_buckets=20000 (repeatable)")
    p.add_argument("--token_file", default=None, help=f"file holding the shared token (or set ${TOKEN_ENV})")
    p.add_argument("--tls_cert", default=None, help="PEM server certificate (chain)")
    p.add_argument("--tls_key", default=None, help="PEM private key of --tls_cert")
    p.add_argument("--allow_insecure_remote", action="store_true",
                   help="allow a non-loopback --host without a token (trusted networks only)")
    p.add_argument("--port_file", default=None, help="write the bound port here once listening")
    p.add_argument(
        "--allowed_root",
        action="append",
        default=[],
        help="confine callers' output_dir/analyzed_dir/model_dir to this existing directory "
        "(repeatable; default: a directory of the service's own, named when it starts)",
    )
    return p


def print_help() -> None:
    """The options (the CLI calls this for `featurebridge expansion-service --help`)."""
    _parser().print_help()


def parse_args(argv: Optional[Sequence[str]]) -> ServerConfig:
    """Command line -> ServerConfig.

    Raises:
      UsageError (a ValueError): unreadable token file or inconsistent options.
    """
    args = _parser().parse_args(list(argv or []))
    token = os.environ.get(TOKEN_ENV) or None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip() or None
        except OSError as e:
            raise UsageError(f"--token_file {args.token_file!r} cannot be read: {e.strerror}.") from None
    config = ServerConfig(
        host=args.host,
        port=args.port,
        environment=args.environment,
        environment_config=args.environment_config,
        package=args.package,
        requirements_file=args.requirements_file,
        stage_project=not args.no_stage_project,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_request_bytes=args.max_request_bytes,
        max_message_bytes=args.max_message_bytes,
        grace_seconds=args.grace_seconds,
        expand_timeout_seconds=args.expand_timeout_seconds,
        max_expand_memory_mb=args.max_expand_memory_mb,
        memory_watermark_mb=args.memory_watermark_mb,
        stream_timeout_seconds=args.stream_timeout_seconds,
        spec_limits=tuple(args.spec_limit),
        token=token,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        allow_insecure_remote=args.allow_insecure_remote,
        port_file=args.port_file,
        allowed_roots=tuple(os.path.abspath(r) for r in args.allowed_root),
    )
    config.validate()
    return config


def run(argv: Optional[Sequence[str]] = None) -> None:
    """Serves until SIGTERM/SIGINT, then drains (the CLI's command entry point)."""
    config = parse_args(argv)
    server = ExpansionServer(config)
    server.start()  # writes --port_file once listening
    stop = threading.Event()

    def on_signal(signum, _frame):
        _LOG.info("Received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):
        pass
    # Whatever is still running (a construction, a stream a caller stopped
    # reading), the process is gone within grace + 2 s.
    deadline = threading.Timer(config.grace_seconds + 1.5, _exit_now)
    deadline.daemon = True
    deadline.start()
    server.stop().wait(1.0)
    # Give clients a moment to read the last responses: the process exit closes
    # the sockets, and a close with unread data resets the connection, which can
    # drop a response the client has not read yet.
    time.sleep(0.3)
    _LOG.info("Stopped")


def _exit_now() -> None:
    _LOG.warning("Still stopping 1.5 s after the grace period; exiting now")
    logging.shutdown()
    os._exit(0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    setup_logging()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"expansion-service: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
