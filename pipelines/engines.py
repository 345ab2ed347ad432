"""Engines on one machine: Beam's Flink and Spark job servers from `make engines`,
and an EXTERNAL SDK worker pool from this Python environment.

A runner config for one machine (``runner_configs/flink-local.yaml``,
``spark-local.yaml``) names the job-server launcher jar under
``${FEATUREBRIDGE_ENGINES}`` and sets ``local_worker_pool: true``. For the
job's lifetime, `engine_session` then

- checks that the jar is there (Beam would otherwise download one from the
  internet at start; featurebridge never does), naming the command that
  builds it;
- starts ``python -m apache_beam.runners.worker.worker_pool_main`` from this
  interpreter's environment on a free loopback port, and points
  ``--environment_type=EXTERNAL --environment_config`` at it: the same shape
  as worker-pool sidecars next to each Flink TaskManager or Spark executor;
- stops the pool, with every SDK worker it started, when the job ends.

Beam's own FlinkRunner / SparkRunner start the job server from the jar, with
embedded Flink (``flink_master: "[local]"``) or Spark inside its JVM
(``spark_master_url: local[2]``).

Versions: the Java side (job servers, Java SDK) is Beam `JAVA_BEAM_VERSION`,
the newest release whose runner libraries Maven Central serves with all their
dependencies; the Python SDK is the one in constraints.txt. See README
"Running on Flink and Spark".
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from featurebridge.transforms.errors import FeaturebridgeError

__all__ = [
    "ENGINES_ENV",
    "EngineError",
    "EngineOptions",
    "FLINK_JOB_SERVER_JAR",
    "JAVA_BEAM_VERSION",
    "accepts_connections",
    "SPARK_JOB_SERVER_JAR",
    "engine_info",
    "engine_session",
    "engines_dir",
    "expand_engines_dir",
    "free_port",
    "log_tail",
    "stop_process_group",
]

_LOG = logging.getLogger(__name__)

# Keep in step with java/engines/pom.xml and java/pom.xml (a test checks).
JAVA_BEAM_VERSION = "2.62.0"
FLINK_MINOR = "1.19"
FLINK_JOB_SERVER_JAR = f"beam-runners-flink-{FLINK_MINOR}-job-server-{JAVA_BEAM_VERSION}.jar"
SPARK_JOB_SERVER_JAR = f"beam-runners-spark-3-job-server-{JAVA_BEAM_VERSION}.jar"
ENGINES_ENV = "FEATUREBRIDGE_ENGINES"
BUILD_COMMAND = "make engines"
WORKER_POOL_START_TIMEOUT_S = 60.0

_JAR_OPTIONS = {"FlinkRunner": "flink_job_server_jar", "SparkRunner": "spark_job_server_jar"}


class EngineError(FeaturebridgeError, ValueError):
    """An engine cannot start: its job-server jar is missing, or the worker pool did
    not come up. A setup problem the message says how to fix (exit 2 in the CLI)."""


class EngineOptions(PipelineOptions):
    """featurebridge's options for one-machine engines."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--local_worker_pool",
            action="store_true",
            default=False,
            help="Start an EXTERNAL SDK worker pool from this Python environment on a free "
            "loopback port for the job's lifetime (one-machine Flink/Spark configs set this).",
        )


def engines_dir() -> str:
    """Where `make engines` puts the job-server jars: $FEATUREBRIDGE_ENGINES, else
    ~/.cache/featurebridge/engines/beam-<JAVA_BEAM_VERSION> (XDG_CACHE_HOME honoured)."""
    if os.environ.get(ENGINES_ENV):
        return os.path.abspath(os.path.expanduser(os.environ[ENGINES_ENV]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "featurebridge", "engines", f"beam-{JAVA_BEAM_VERSION}")


def expand_engines_dir(value: object) -> object:
    """Replaces ``${FEATUREBRIDGE_ENGINES}`` in a runner-config string value."""
    if isinstance(value, str) and "${" + ENGINES_ENV + "}" in value:
        return value.replace("${" + ENGINES_ENV + "}", engines_dir())
    return value


def _check_job_server_jar(options: Mapping[str, object]) -> Optional[str]:
    """The job-server jar the runner will start, checked to exist; None for other runners."""
    runner = options.get("runner") or ""
    option = _JAR_OPTIONS.get(str(runner))
    if option is None:
        return None
    jar = options.get(option)
    build = (
        f"Build the one-machine job servers with `{BUILD_COMMAND}` (needs Java 17 and Maven; "
        f"jars go to {engines_dir()}, or ${ENGINES_ENV}), or point --{option} at a job-server "
        "jar you copied to this machine."
    )
    if not jar:
        raise EngineError(
            f"{runner} needs --{option}: without it Beam downloads a job-server jar from the "
            f"internet at start, which featurebridge never does. {build}"
        )
    if not os.path.isfile(str(jar)):
        raise EngineError(f"{runner}: job-server jar {jar!r} (--{option}) does not exist. {build}")
    return str(jar)


_LIB_VERSIONS = {
    "flink": re.compile(r"(?:^|/)flink-runtime-(\d[\w.\-]*)\.jar$"),
    "spark": re.compile(r"(?:^|/)spark-core_[\d.]+-(\d[\w.\-]*)\.jar$"),
    "beam": re.compile(r"(?:^|/)beam-runners-(?:flink-[\d.]+|spark-3)-(\d[\w.\-]*?)\.jar$"),
}


def _jar_versions(jar: str) -> Dict[str, str]:
    """Engine and Beam versions from a launcher jar's Class-Path (or a shaded jar's name)."""
    found: Dict[str, str] = {}
    try:
        with zipfile.ZipFile(jar) as z:
            manifest = z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        manifest = ""
    # Manifest lines wrap at 72 bytes with a leading space on continuations.
    unwrapped = manifest.replace("\r\n ", "").replace("\n ", "")
    entries = []
    for line in unwrapped.splitlines():
        if line.startswith("Class-Path:"):
            entries = line.split(":", 1)[1].split()
    for entry in entries:
        for name, pattern in _LIB_VERSIONS.items():
            m = pattern.search(entry)
            if m and name not in found:
                found[name] = m.group(1)
    m = re.search(r"job-server-(\d[\w.\-]*?)\.jar$", os.path.basename(jar))
    if m:
        found.setdefault("beam", m.group(1))
    return found


def engine_info(options: Mapping[str, object]) -> Dict[str, object]:
    """What ran the job, for the manifest: engine, its version, where, and the job server.

    Args:
      options: PipelineOptions.get_all_options() of the job.
    """
    from importlib import metadata

    runner = str(options.get("runner") or "DirectRunner")
    python_beam = metadata.version("apache-beam")
    if runner in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"):
        return {"engine": "Beam DirectRunner", "version": python_beam, "runner": runner}
    if runner in _JAR_OPTIONS:
        jar = str(options.get(_JAR_OPTIONS[runner]) or "")
        versions = _jar_versions(jar) if jar else {}
        if runner == "FlinkRunner":
            master = str(options.get("flink_master") or "[auto]")
            info = {
                "engine": "Apache Flink",
                "version": versions.get("flink", "unknown"),
                "master": master,
                "embedded": master in ("[local]", "[auto]"),
                "parallelism": options.get("parallelism"),
            }
        else:
            master = str(options.get("spark_master_url") or "local[4]")
            info = {
                "engine": "Apache Spark",
                "version": versions.get("spark", "unknown"),
                "master": master,
                "embedded": master.startswith("local"),
            }
        info.update(
            runner=runner,
            job_server_jar=jar,
            job_server_beam_version=versions.get("beam", "unknown"),
            sdk_beam_version=python_beam,
        )
        return info
    info = {"engine": runner, "runner": runner, "sdk_beam_version": python_beam}
    if options.get("job_endpoint"):
        info["job_endpoint"] = options["job_endpoint"]
    return info


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (another process may take it later)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: str, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log file ("(no log)" if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return "(no log)"


def stop_process_group(proc: Optional[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, the process group ``proc`` leads; then SIGKILL what is
    left of the group (children such as SDK workers) once the leader is gone."""
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=grace)


class _WorkerPool:
    """An SDK worker pool process from this interpreter's environment."""

    def __init__(self, log_dir: str):
        self.log_path = os.path.join(log_dir, "worker_pool.log")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = WORKER_POOL_START_TIMEOUT_S) -> None:
        env = dict(os.environ)
        # The pool starts each SDK worker as bare `python`: make that this environment's.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        for attempt in range(3):  # a port found free may be taken before the pool binds it
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                     f"--service_port={self.port}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,  # its own process group: stop() reaches the workers
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if accepts_connections(self.port):
                    return
                time.sleep(0.1)
            self.stop()
            if attempt == 2:
                raise EngineError(
                    f"The SDK worker pool did not start listening on localhost:{self.port} within "
                    f"{timeout:.0f} s. Its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}"
                )

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None


@contextlib.contextmanager
def engine_session(argv: Sequence[str]) -> Iterator[List[str]]:
    """Checks the engine's jar and starts what ``--local_worker_pool`` asks for.

    Args:
      argv: the job's flags, runner config already expanded.

    Yields:
      The flags to build the pipeline with: ``argv`` without ``--local_worker_pool``,
      plus the EXTERNAL environment of the pool it started.

    Raises:
      EngineError: a FlinkRunner/SparkRunner job-server jar is missing, or the pool
        did not start; the message names the command that fixes it.
    """
    argv = list(argv)
    options = PipelineOptions(argv).get_all_options()
    jar = _check_job_server_jar(options)
    if jar and shutil.which("java") is None:
        raise EngineError(
            f"{options.get('runner')} starts its job server with `java`, which is not on PATH: install Java 17."
        )
    if not options.get("local_worker_pool"):
        yield argv
        return
    log_dir = tempfile.mkdtemp(prefix="featurebridge-engine-")
    pool = _WorkerPool(log_dir)
    pool.start()
    _LOG.info(
        "SDK worker pool (this Python environment) on localhost:%d; its log: %s", pool.port, pool.log_path
    )
    if jar:
        info = engine_info(options)
        _LOG.info(
            "%s %s (%s) through Beam's job server %s; the first job on it starts its JVM (~10 s)",
            info["engine"], info["version"], info["master"], info["job_server_beam_version"],
        )
    flags = [a for a in argv if a != "--local_worker_pool"]
    flags += ["--environment_type=EXTERNAL", f"--environment_config=localhost:{pool.port}"]
    ok = False
    try:
        yield flags
        ok = True
    finally:
        pool.stop()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            _LOG.info("The SDK worker pool's log is kept: %s", pool.log_path)
