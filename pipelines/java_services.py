"""What a Java pipeline needs on one machine, as separate processes: Beam's
Flink and Spark job servers from `make engines` (a job endpoint for the
PortableRunner), an EXTERNAL Python SDK worker pool, and the `java/` module
built with Maven (its test classpath).

This is what docs/java/README.md's quick start runs by hand, for code that
runs it for you (the Java engine tests, benchmarks.xlang_engines)::

    from featurebridge.pipelines.java_services import ServiceGroup, maven_build

    classpath = maven_build("java", "mvn.log")
    with ServiceGroup(log_dir) as services:
        services.start_worker_pool()
        services.start_job_server("flink", artifacts_dir)
        services.wait("worker_pool"); services.wait("flink")
        ... java -cp CLASSPATH ... --jobEndpoint=services.endpoint("flink")

Every process runs in a process group of its own, logs to a file, and is
stopped with its whole group. One-machine runner configs (flink-local.yaml)
need none of this: Beam's FlinkRunner/SparkRunner start their job server
themselves (`featurebridge.pipelines.engines`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from featurebridge.pipelines.engines import (
    FLINK_JOB_SERVER_JAR,
    SPARK_JOB_SERVER_JAR,
    engines_dir,
    free_port,
    log_tail,
    stop_process_group,
)
from featurebridge.pipelines.local_cluster import wait_for_port, worker_env

__all__ = [
    "JOB_SERVERS",
    "JavaBuildError",
    "MAVEN_TIMEOUT_S",
    "START_TIMEOUT_S",
    "ServiceGroup",
    "job_server_argv",
    "maven_build",
    "missing_java_tools",
    "popen_logged",
    "run_logged",
    "worker_pool_argv",
]

# engine -> (job-server jar under engines_dir(), flags for embedded Flink / local Spark)
JOB_SERVERS: Dict[str, Tuple[str, List[str]]] = {
    "flink": (FLINK_JOB_SERVER_JAR, ["--flink-master=[local]"]),
    "spark": (SPARK_JOB_SERVER_JAR, ["--spark-master-url=local[2]"]),
}
START_TIMEOUT_S = 90.0
MAVEN_TIMEOUT_S = 600.0  # online only the first time; offline it takes ~15 s
STOP_GRACE_S = 10.0


class JavaBuildError(RuntimeError):
    """Maven could not build the java/ module; the message ends with its log tail."""


def popen_logged(
    argv: Sequence[str], log_path: str, cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None
) -> subprocess.Popen:
    """Starts ``argv`` in a process group of its own, stdout and stderr appended
    to ``log_path``, stdin closed.

    Args:
      env: the whole environment; None: `local_cluster.worker_env()` (this
        interpreter's bin directory first on PATH).
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=worker_env() if env is None else env, cwd=cwd, start_new_session=True,
        )


def run_logged(
    argv: Sequence[str], log_path: str, timeout: float, cwd: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
) -> int:
    """Runs ``argv`` to completion (see `popen_logged`) and returns its exit code;
    after ``timeout`` seconds kills its group, notes that in the log and returns -1.
    Whatever it left running in its group is killed either way."""
    proc = popen_logged(argv, log_path, cwd, env)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc, grace=STOP_GRACE_S)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"\n*** killed after {timeout:.0f} s ***\n")
        return -1
    finally:
        stop_process_group(proc, grace=STOP_GRACE_S)


def missing_java_tools(engines: Sequence[str] = tuple(JOB_SERVERS), tools: Sequence[str] = ("java", "mvn")) -> List[str]:
    """What is missing to build the java/ module and run it on ``engines``: each
    tool not on PATH and each job-server jar not in `engines_dir()` (empty when
    nothing is)."""
    problems = [f"`{tool}` is not on PATH" for tool in tools if shutil.which(tool) is None]
    for engine in engines:
        jar = JOB_SERVERS[engine][0]
        if not os.path.isfile(os.path.join(engines_dir(), jar)):
            problems.append(f"{jar} is missing from {engines_dir()}")
    return problems


def maven_build(
    java_dir: str, log_path: str, timeout: float = MAVEN_TIMEOUT_S, env: Optional[Dict[str, str]] = None
) -> str:
    """Compiles the Maven module in ``java_dir`` with its tests and returns its
    test classpath (test classes, classes, then every dependency).

    Offline first (``mvn -o``, when ~/.m2 already has everything); if Maven says
    something is missing offline, once more online to fetch it.

    Raises:
      JavaBuildError: Maven failed or ran past ``timeout`` seconds (a try);
        the message ends with its log tail.
    """
    cp_file = os.path.join(java_dir, "target", "classpath.txt")
    goals = ["-B", "-q", "test-compile", "dependency:build-classpath",
             f"-Dmdep.outputFile={cp_file}", "-Dmdep.includeScope=test"]
    rc = run_logged(["mvn", "-o", *goals], log_path, timeout, java_dir, env)
    if rc != 0 and "offline" in log_tail(log_path, 6000):
        rc = run_logged(["mvn", *goals], log_path, timeout, java_dir, env)  # fetch what is missing
    if rc != 0:
        raise JavaBuildError(f"mvn could not build java/ (rc {rc}):\n{log_tail(log_path, 6000)}")
    with open(cp_file, encoding="utf-8") as f:
        deps = f.read().strip()
    return os.pathsep.join([os.path.join(java_dir, "target", "test-classes"),
                            os.path.join(java_dir, "target", "classes"), deps])


def worker_pool_argv(port: int) -> List[str]:
    """Beam's SDK worker pool from this interpreter, listening on ``port``."""
    return [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"]


def job_server_argv(engine: str, job_port: int, artifact_port: int, artifacts_dir: str) -> List[str]:
    """Beam's ``engine`` ("flink" or "spark") job server from `engines_dir()`:
    embedded Flink (``[local]``) or Spark ``local[2]`` in its JVM, its job
    service on ``job_port``, no expansion service of its own.

    Raises:
      KeyError: ``engine`` is not one of `JOB_SERVERS`.
    """
    jar, flags = JOB_SERVERS[engine]
    return ["java", "-jar", os.path.join(engines_dir(), jar), *flags,
            f"--job-port={job_port}", f"--artifact-port={artifact_port}", "--expansion-port=-1",
            f"--artifacts-dir={artifacts_dir}"]


class ServiceGroup:
    """Named service processes started together and stopped together.

    Attributes:
      log_dir: where each service's ``<name>.log`` goes.
      procs, ports, logs: each service's process, port and log path, by name.
    """

    def __init__(self, log_dir: str, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
        """``env``: the services' whole environment (None: `local_cluster.worker_env()`);
        ``cwd``: their working directory (None: this process's)."""
        self.log_dir = log_dir
        self.env = env
        self.cwd = cwd
        self.procs: Dict[str, subprocess.Popen] = {}
        self.ports: Dict[str, int] = {}
        self.logs: Dict[str, str] = {}

    def start(self, name: str, argv: Sequence[str], port: int) -> None:
        """Starts ``argv`` as service ``name``, which will listen on ``port`` (see `wait`)."""
        self.logs[name] = os.path.join(self.log_dir, f"{name}.log")
        self.ports[name] = port
        self.procs[name] = popen_logged(argv, self.logs[name], self.cwd, self.env)

    def start_worker_pool(self, name: str = "worker_pool") -> None:
        """An EXTERNAL SDK worker pool on a free port (`endpoint(name)` is its environment_config)."""
        port = free_port()
        self.start(name, worker_pool_argv(port), port)

    def start_job_server(self, engine: str, artifacts_dir: str) -> None:
        """``engine``'s job server (see `job_server_argv`) on free ports, named ``engine``."""
        port = free_port()
        self.start(engine, job_server_argv(engine, port, free_port(), artifacts_dir), port)

    def wait(self, name: str, timeout: float = START_TIMEOUT_S) -> None:
        """Blocks until service ``name`` accepts connections.

        Raises:
          local_cluster.ClusterStartError: it exited or did not listen within
            ``timeout`` seconds; the message ends with its log tail.
        """
        wait_for_port(self.ports[name], self.procs[name], name, self.logs[name], timeout)

    def endpoint(self, name: str) -> str:
        """``localhost:PORT`` of service ``name``."""
        return f"localhost:{self.ports[name]}"

    def log(self, name: str, chars: int = 6000) -> str:
        """The last ``chars`` characters of service ``name``'s log ("(no log)" if none)."""
        return log_tail(self.logs[name], chars)

    def stop(self) -> None:
        """Stops every service with its process group (SIGTERM, then SIGKILL)."""
        for proc in self.procs.values():
            stop_process_group(proc, grace=STOP_GRACE_S)

    def __enter__(self) -> "ServiceGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

