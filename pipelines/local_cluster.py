"""A one-machine "cluster" for the PortableRunner: Beam's Python job server and
an external SDK worker pool, each a separate process.

The job server is Beam's (``featurebridge.pipelines.job_server`` adds only what Flink and
Spark already do: a bundle whose SDK harness died fails instead of waiting).
This is the shape of Flink or Spark with Beam worker-pool sidecars: the
launcher submits the portable pipeline to a job service over gRPC, and the
runner asks the worker pool (EXTERNAL environment) to start SDK harnesses.

    from featurebridge.pipelines.local_cluster import portable_cluster

    with portable_cluster() as cluster:
        run(["--input", ..., *cluster.pipeline_flags()])
        cluster.kill_worker_pool()   # simulate a dying worker

Both processes bind 127.0.0.1/localhost ports chosen free at start, run with
this interpreter's bin directory first on PATH (the worker pool starts each
SDK harness as plain ``python``), log to files under ``log_dir``, and are
killed with their whole process group on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

from featurebridge.pipelines.engines import accepts_connections, free_port, log_tail, stop_process_group

__all__ = [
    "ClusterStartError",
    "PortableCluster",
    "free_port",
    "portable_cluster",
    "remote_ports",
    "wait_for_port",
]

HOST = "localhost"
START_TIMEOUT_S = 60.0


class ClusterStartError(RuntimeError):
    """The job server or worker pool did not start listening in time."""


def wait_for_port(port: int, proc: subprocess.Popen, name: str, log_path: str, timeout: float) -> None:
    """Blocks until ``port`` accepts connections; raises if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterStartError(
                f"{name} exited with code {proc.returncode} before listening on port {port}. "
                f"Log tail:\n{log_tail(log_path)}"
            )
        if accepts_connections(port):
            return
        time.sleep(0.1)
    raise ClusterStartError(
        f"{name} did not listen on port {port} within {timeout:.0f} s. Log tail:\n{log_tail(log_path)}"
    )


def remote_ports(pid: int) -> set:
    """Remote TCP ports of pid's established connections (Linux /proc)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "01" and cols[9] in inodes:  # 01 = ESTABLISHED
                    ports.add(int(cols[2].rsplit(":", 1)[1], 16))
    return ports


def worker_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for the services: this interpreter's bin directory first on
    PATH (the worker pool starts SDK harnesses as plain ``python``).

    Args:
      extra: variables to set; an extra PYTHONPATH goes before the current one.
    """
    env = dict(os.environ)
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("PYTEST_CURRENT_TEST", None)
    extra = dict(extra or {})
    if extra.get("PYTHONPATH") and env.get("PYTHONPATH"):
        extra["PYTHONPATH"] += os.pathsep + env["PYTHONPATH"]
    env.update(extra)
    return env


@dataclass
class PortableCluster:
    """Handles on a running job server and worker pool.

    Attributes:
      job_port, worker_port: the ports they listen on (localhost).
      staging_dir: where the job server stages each job's artifacts.
      log_dir: job_server.log and worker_pool.log.
    """

    job_port: int
    worker_port: int
    staging_dir: str
    log_dir: str
    job_server: Optional[subprocess.Popen] = field(default=None, repr=False)
    worker_pool: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def job_endpoint(self) -> str:
        return f"{HOST}:{self.job_port}"

    @property
    def worker_pool_endpoint(self) -> str:
        return f"{HOST}:{self.worker_port}"

    def pipeline_flags(self) -> List[str]:
        """PipelineOptions flags that send a pipeline to this cluster."""
        return [
            "--runner=PortableRunner",
            f"--job_endpoint={self.job_endpoint}",
            "--environment_type=EXTERNAL",
            f"--environment_config={self.worker_pool_endpoint}",
            # Local job service: the launcher's SDK is the workers' SDK; stage nothing extra.
            "--sdk_location=container",
        ]

    def log(self, which: str = "worker_pool") -> str:
        """The tail of ``job_server`` or ``worker_pool`` log."""
        return log_tail(os.path.join(self.log_dir, f"{which}.log"))

    def alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.job_server, self.worker_pool))

    def _logged_port(self, server: str) -> Optional[int]:
        marker = f"starting {server} server on port "
        text = self.log("job_server")
        if marker not in text:
            return None
        return int(text.rsplit(marker, 1)[1].split()[0])

    def control_port(self) -> Optional[int]:
        """The control port of the job server's latest job, from its log (None before a job)."""
        return self._logged_port("control")

    def data_port(self) -> Optional[int]:
        """The data port of the job server's latest job, from its log (None before a job)."""
        return self._logged_port("data")

    def harness_pids(self) -> List[int]:
        """Pids of the SDK harness processes the worker pool started (Linux /proc)."""
        if self.worker_pool is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getpgid(int(entry)) != self.worker_pool.pid or int(entry) == self.worker_pool.pid:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"SdkHarness" in f.read():
                        pids.append(int(entry))
            except (OSError, ValueError):
                continue
        return pids

    def wait_for_harness_connected(self, timeout: float) -> bool:
        """Waits until an SDK harness holds open connections to the job's control
        AND data ports, i.e. it is processing a bundle (a harness connected only
        to the control port may not have opened its control stream yet, and a
        death in that window is one Beam's job server waits on forever).
        Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {self.control_port(), self.data_port()}
            if None not in ports:
                for pid in self.harness_pids():
                    if ports <= remote_ports(pid):
                        return True
            time.sleep(0.1)
        return False

    def kill_worker_pool(self) -> None:
        """Kills the worker pool and every SDK harness it started (SIGKILL, no grace)."""
        if self.worker_pool is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker_pool.pid, signal.SIGKILL)
            self.worker_pool.wait(timeout=10)

    def stop(self) -> None:
        stop_process_group(self.worker_pool)
        stop_process_group(self.job_server)


def _start(args: List[str], log_path: str, env: Dict[str, str]) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: killpg reaches the SDK harnesses too
        )
    finally:
        log.close()


@contextlib.contextmanager
def portable_cluster(
    base_dir: Optional[str] = None,
    timeout: float = START_TIMEOUT_S,
    env: Optional[Dict[str, str]] = None,
) -> Iterator[PortableCluster]:
    """Starts a job server and an external worker pool; stops both on exit.

    Args:
      base_dir: where to put staging/ and logs/; a temp dir (removed on exit) if None.
      timeout: seconds to wait for each service to accept connections.
      env: extra environment variables for both services.

    Yields:
      A PortableCluster.

    Raises:
      ClusterStartError: a service exited early or did not listen in time; the
        message carries its log tail.
    """
    own_dir = base_dir is None
    base = tempfile.mkdtemp(prefix="fb_portable_") if own_dir else base_dir
    staging = os.path.join(base, "staging")
    logs = os.path.join(base, "logs")
    os.makedirs(staging, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    service_env = worker_env(env)
    cluster = None
    try:
        for attempt in range(3):  # a port picked free may be taken before we bind it
            cluster = PortableCluster(free_port(), free_port(), staging, logs)
            try:
                cluster.worker_pool = _start(
                    ["apache_beam.runners.worker.worker_pool_main", f"--service_port={cluster.worker_port}"],
                    os.path.join(logs, "worker_pool.log"),
                    service_env,
                )
                cluster.job_server = _start(
                    [
                        "featurebridge.pipelines.job_server",
                        f"--port={cluster.job_port}",
                        f"--staging_dir={staging}",
                    ],
                    os.path.join(logs, "job_server.log"),
                    service_env,
                )
                wait_for_port(
                    cluster.worker_port, cluster.worker_pool, "worker pool",
                    os.path.join(logs, "worker_pool.log"), timeout,
                )
                wait_for_port(
                    cluster.job_port, cluster.job_server, "job server",
                    os.path.join(logs, "job_server.log"), timeout,
                )
                break
            except ClusterStartError:
                cluster.stop()
                if attempt == 2:
                    raise
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)
