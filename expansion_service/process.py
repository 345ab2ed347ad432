"""The expansion service as a separate process, for tests, benchmarks and
local runs that need a real endpoint::

    from featurebridge.expansion_service.process import expansion_service_process

    with expansion_service_process(args=["--environment", "embedded", "--no_stage_project"]) as service:
        SchemaAwareExternalTransform(..., service.address, ...)

It runs ``python -m featurebridge.expansion_service`` with this interpreter on
a loopback port, in a process group of its own, logging to a file; the block
starts once the port accepts connections and ends by stopping the group
(SIGTERM, so the service drains, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Sequence

from featurebridge.pipelines.engines import log_tail, stop_process_group
from featurebridge.pipelines.local_cluster import ClusterStartError, wait_for_port, worker_env

__all__ = ["ExpansionServiceProcess", "START_TIMEOUT_S", "STOP_GRACE_S", "expansion_service_process"]

HOST = "localhost"
START_TIMEOUT_S = 120.0
# SIGTERM drains in-flight requests (--grace_seconds, 30 by default) before SIGKILL.
STOP_GRACE_S = 30.0


@dataclass
class ExpansionServiceProcess:
    """A running expansion service process.

    Attributes:
      port: the loopback port it listens on.
      log_path: its stdout and stderr.
      proc: the process (the leader of its own process group).
    """

    port: int
    log_path: str
    proc: subprocess.Popen = field(repr=False)

    @property
    def address(self) -> str:
        """``localhost:PORT``, what Beam's clients take as the expansion service."""
        return f"{HOST}:{self.port}"

    def log(self) -> str:
        """The log so far ("" when nothing was written yet)."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


@contextlib.contextmanager
def expansion_service_process(
    port: Optional[int] = None,
    args: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
    log_path: Optional[str] = None,
    cwd: Optional[str] = None,
    timeout: float = START_TIMEOUT_S,
) -> Iterator[ExpansionServiceProcess]:
    """Runs the expansion service in a separate process until the block ends.

    Args:
      port: the port to listen on; None lets the service pick a free one
        (``--port 0``) and report it, so no other process can take it first.
      args: more command-line options (``--environment ...``; not ``--port``
        or ``--port_file``).
      env: the whole environment of the process; None:
        `featurebridge.pipelines.local_cluster.worker_env()` (this interpreter's
        bin directory first on PATH).
      log_path: where its output goes (appended); None: a temporary file,
        removed when the block ends.
      cwd: its working directory (None: this process's).
      timeout: seconds to wait for it to listen.

    Yields:
      An `ExpansionServiceProcess` (address, port, log_path, proc).

    Raises:
      ClusterStartError (a RuntimeError): it exited or did not listen within
        `timeout`; the message ends with its log tail.
    """
    scratch = tempfile.mkdtemp(prefix="fb_expansion_service_")
    log_path = log_path or os.path.join(scratch, "expansion_service.log")
    port_file = os.path.join(scratch, "port")
    command = [sys.executable, "-m", "featurebridge.expansion_service",
               "--port", str(port if port is not None else 0), "--port_file", port_file, *args]
    proc = None
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=worker_env() if env is None else env, cwd=cwd, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        bound = _wait_for_port_file(port_file, proc, log_path, timeout)
        wait_for_port(bound, proc, "the expansion service", log_path, max(deadline - time.monotonic(), 1.0))
        yield ExpansionServiceProcess(port=bound, log_path=log_path, proc=proc)
    finally:
        stop_process_group(proc, grace=STOP_GRACE_S)
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_for_port_file(port_file: str, proc: subprocess.Popen, log_path: str, timeout: float) -> int:
    """The port the service wrote to `port_file` once listening.

    Raises:
      ClusterStartError: it exited first, or `timeout` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            raise ClusterStartError(
                f"the expansion service exited with code {proc.returncode} before listening. "
                f"Log tail:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise ClusterStartError(f"the expansion service did not listen within {timeout:.0f} s. Log tail:\n{log_tail(log_path)}")
        time.sleep(0.1)
    with open(port_file) as f:
        return int(f.read())
