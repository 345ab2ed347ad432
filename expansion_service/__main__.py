"""``python -m featurebridge.expansion_service`` (also ``featurebridge expansion-service``).

    python -m featurebridge.expansion_service --port 8097 [--host 127.0.0.1]
        [--environment docker|process|external|embedded] [--environment_config ...]

Starts featurebridge's restricted Beam expansion service and serves until
SIGTERM or Ctrl-C, then drains in-flight requests for --grace_seconds.
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
    p.add_argument("--max_concurrent_rpcs", type=int, default=8)
    p.add_argument("--max_message_bytes", type=int, default=64 << 20)
    p.add_argument("--grace_seconds", type=float, default=30.0)
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
        help="confine callers' output_dir/analyzed_dir/model_dir to this directory (repeatable); "
        "recommended whenever the service listens beyond loopback",
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
        max_message_bytes=args.max_message_bytes,
        grace_seconds=args.grace_seconds,
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
    server.stop().wait()
    # Give clients a moment to read the last responses: the process exit closes
    # the sockets, and a close with unread data resets the connection, which can
    # drop a response the client has not read yet.
    time.sleep(0.5)
    _LOG.info("Stopped")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"expansion-service: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
