"""The Java -> Python boundary on Flink: the same analyze-and-transform, called
from a Java pipeline through featurebridge's expansion service and applied in
process in a Python pipeline, side by side in one run on the same rows, the
same Flink job server (embedded Flink ``[local]``, parallelism 2) and the same
EXTERNAL Python worker pool.

    make engines   # once: the Flink job server
    PATH=$PWD/.venv/bin:$PATH .venv/bin/python -m benchmarks.xlang_engines --rows 2000 20000

- **java**: ``org.featurebridge.FeatureBridgeEngineIT`` from java/'s test sources
  (what tests/test_java_engines.py runs), analyze stage only: TextIO reads the
  JSON-lines rows, ``RawRows`` types them, ``FeatureBridge.analyzeAndTransform``
  (SchemaTransform identifier, through the expansion service), ``ToJson`` +
  TextIO write output and rejected rows (one file each). PortableRunner, Java
  steps LOOPBACK in the launching JVM; ``LoopbackEnvironment.prepare`` sets
  ``environmentCacheMillis`` to 3,600,000.
- **python**: this module's ``--child`` mode: ReadFromText of the same file,
  ``json.loads`` to typed ``beam.Row``, ``featurebridge.transforms.xlang.AnalyzeAndTransformRows``
  in process, JSON lines out (one file each). PortableRunner with
  ``--job_endpoint`` to the same job server, ``--environment_type=EXTERNAL`` to
  the same pool, ``--parallelism=2``, ``--environment_cache_millis=3600000``.

Rows: ``featurebridge.pipelines.sample_data.generate_rows(N, seed=3)`` with ``SAMPLE_SPEC``
(as in RESULTS.md "Cross-language"). Each run is a fresh process, timed from
launch to exit; the pipeline's own run time (``run()`` to finished) comes from
its output. One warm-up per variant (smallest row count), then per row count
two rounds in ABBA order. Prints one JSON object; figures go to
benchmarks/RESULTS.md ("Flink: the Java -> Python boundary").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_MARK = "xlang_engines child: "
CACHE_MILLIS = 3_600_000  # what LoopbackEnvironment.prepare gives the Java run
PARALLELISM = 2
SEED = 3
JAVA_DIR = os.path.join(REPO_ROOT, "java")
IT_CLASS = "org.featurebridge.FeatureBridgeEngineIT"  # what tests/test_java_engines.py runs


# ---------------------------------------------------------------------------
# The Python variant (a child process). Module-level functions so the SDK
# workers import them from here by reference (this module imports nothing
# heavy at the top).


def _row_from_json(line: str, columns):
    import apache_beam as beam

    obj = json.loads(line)
    return beam.Row(**{c: obj.get(c) for c in columns})


def _row_to_json(row) -> str:
    return json.dumps(row._asdict(), sort_keys=True)


def _child(config: Dict[str, str]) -> int:
    """Reads ``rows``, applies AnalyzeAndTransformRows, writes two JSON-lines files."""
    started = time.monotonic()
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from featurebridge.transforms.spec import FeatureSpec
    from featurebridge.transforms.xlang import AnalyzeAndTransformRows, raw_row_type

    with open(config["spec"], encoding="utf-8") as f:
        spec_text = f.read()
    spec = FeatureSpec.from_text(spec_text)
    columns = list(spec.column_names)
    options = PipelineOptions([
        "--runner=PortableRunner",
        f"--job_endpoint={config['job_endpoint']}",
        "--environment_type=EXTERNAL",
        f"--environment_config={config['worker_pool']}",
        "--sdk_location=container",
        f"--parallelism={PARALLELISM}",
        f"--environment_cache_millis={CACHE_MILLIS}",
    ])
    imported = time.monotonic()
    p = beam.Pipeline(options=options)
    raw = (
        p
        | "RowsRead" >> beam.io.ReadFromText(config["rows"])
        | "RowsParse" >> beam.Map(_row_from_json, columns).with_output_types(raw_row_type(spec))
    )
    result = raw | "AnalyzeAndTransform" >> AnalyzeAndTransformRows(spec_text, config["analyze_dir"])
    os.makedirs(config["out"], exist_ok=True)
    for tag in ("output", "rejected"):
        path = os.path.join(config["out"], f"analyze_{tag}.jsonl")
        (result[tag]
         | f"{tag}-Json" >> beam.Map(_row_to_json)
         | f"{tag}-Write" >> beam.io.WriteToText(path, num_shards=1, shard_name_template=""))
    constructed = time.monotonic()
    state = p.run().wait_until_finish()
    finished = time.monotonic()
    print(CHILD_MARK + json.dumps({
        "state": str(state),
        "imports_s": round(imported - started, 1),
        "construct_s": round(constructed - imported, 1),
        "run_s": round(finished - constructed, 1),
    }), flush=True)
    return 0 if "DONE" in str(state) else 1


# ---------------------------------------------------------------------------
# The driver.


def _env() -> Dict[str, str]:
    """The services' environment, with the checkout on PYTHONPATH: SDK workers
    import this module's functions (the python variant's parse and format steps)."""
    from featurebridge.pipelines.local_cluster import worker_env

    return worker_env({"PYTHONPATH": REPO_ROOT})


def _maven_build(log_path: str) -> str:
    """The java/ module's test classpath (featurebridge.pipelines.java_services.maven_build);
    its timing line goes to stderr: stdout carries only the JSON."""
    from featurebridge.pipelines.java_services import maven_build

    started = time.monotonic()
    cp = maven_build(JAVA_DIR, log_path, env=_env())
    print(f"mvn test-compile: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return cp


def _load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _count_lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _write_inputs(base: str, rows: int) -> Dict[str, str]:
    from featurebridge.pipelines.sample_data import SAMPLE_SPEC, generate_rows

    d = os.path.join(base, f"rows{rows}")
    os.makedirs(d)
    cols = generate_rows(rows, seed=SEED)
    names = list(cols)
    with open(os.path.join(d, "rows.jsonl"), "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps({c: cols[c][i] for c in names}) + "\n")
    with open(os.path.join(d, "spec.yaml"), "w", encoding="utf-8") as f:
        f.write(SAMPLE_SPEC)
    return {"dir": d, "rows": os.path.join(d, "rows.jsonl"), "spec": os.path.join(d, "spec.yaml")}


class _Bench:
    def __init__(self, base: str, cp: str, services, expansion: str, timeout: float):
        self.base, self.cp, self.services, self.expansion, self.timeout = base, cp, services, expansion, timeout
        self.logs = os.path.join(base, "logs")
        self.count = 0

    def _launch(self, argv: List[str], log_path: str, cwd: str):
        from featurebridge.pipelines.engines import stop_process_group
        from featurebridge.pipelines.java_services import popen_logged

        started = time.monotonic()
        proc = popen_logged(argv, log_path, cwd, _env())
        try:
            rc = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            rc = None
        wall = time.monotonic() - started
        stop_process_group(proc, grace=10)
        with open(log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        return rc, round(wall, 1), text

    def run(self, variant: str, inputs: Dict[str, str], rows: int, label: str) -> dict:
        self.count += 1
        run_dir = os.path.join(inputs["dir"], f"{self.count:02d}_{variant}")
        out, analyze_dir = os.path.join(run_dir, "out"), os.path.join(run_dir, "analyzed")
        os.makedirs(run_dir)
        log_path = os.path.join(self.logs, f"{self.count:02d}_{variant}_{rows}.log")
        if variant == "java":
            props = {
                "expansionService": self.expansion,
                "jobEndpoint": self.services.endpoint("flink"),
                "spec": inputs["spec"],
                "rows": inputs["rows"],
                "out": out,
                "analyzeDir": analyze_dir,
                "parallelism": str(PARALLELISM),
                "timeoutSeconds": str(int(self.timeout) - 30),
            }
            argv = ["java", "-cp", self.cp, *[f"-Dfeaturebridge.{k}={v}" for k, v in props.items()],
                    "org.junit.runner.JUnitCore", IT_CLASS]
            rc, wall, text = self._launch(argv, log_path, JAVA_DIR)
            m = re.search(r"featurebridge engine run: (\w+) in ([0-9.]+) s", text)
            ok = rc == 0 and bool(m) and m.group(1) == "DONE" and "OK (1 test)" in text
            extra = {"run_s": float(m.group(2)) if m else None}
        else:
            config = {"job_endpoint": self.services.endpoint("flink"),
                      "worker_pool": self.services.endpoint("worker_pool"),
                      "spec": inputs["spec"], "rows": inputs["rows"], "out": out, "analyze_dir": analyze_dir}
            argv = [sys.executable, "-m", "benchmarks.xlang_engines", "--child", json.dumps(config)]
            rc, wall, text = self._launch(argv, log_path, REPO_ROOT)
            m = re.search(re.escape(CHILD_MARK) + r"(\{.*\})", text)
            extra = json.loads(m.group(1)) if m else {}
            ok = rc == 0 and extra.get("state", "").endswith("DONE")
        if not ok:
            raise RuntimeError(
                f"{variant} run ({rows} rows) failed (rc {rc}, {wall} s). Log {log_path}:\n{text[-5000:]}\n"
                f"--- flink job server:\n{self.services.log('flink')[-3000:]}\n"
                f"--- worker pool:\n{self.services.log('worker_pool')[-3000:]}"
            )
        result = {"variant": variant, "rows": rows, "label": label, "wall_s": wall, **extra,
                  "output_rows": _count_lines(os.path.join(out, "analyze_output.jsonl")),
                  "rejected_rows": _count_lines(os.path.join(out, "analyze_rejected.jsonl"))}
        print(f"{label} {variant} {rows} rows: {wall} s launch to exit, run {result.get('run_s')} s "
              f"(load {_load()})", file=sys.stderr, flush=True)
        return result


def _summary(runs: List[dict], row_counts: List[int]) -> List[dict]:
    table = []
    for rows in row_counts:
        entry = {"rows": rows}
        for variant in ("java", "python"):
            mine = [r for r in runs if r["rows"] == rows and r["variant"] == variant and r["label"] != "warm-up"]
            entry[variant] = {
                "wall_s": [r["wall_s"] for r in mine],
                "run_s": [r.get("run_s") for r in mine],
                "mean_wall_s": round(statistics.mean(r["wall_s"] for r in mine), 1),
                "mean_run_s": round(statistics.mean(r["run_s"] for r in mine), 1),
                "output_rows": sorted({r["output_rows"] for r in mine}),
            }
        entry["ratio_java_to_python"] = {
            "wall": round(entry["java"]["mean_wall_s"] / entry["python"]["mean_wall_s"], 2),
            "run": round(entry["java"]["mean_run_s"] / entry["python"]["mean_run_s"], 2),
        }
        table.append(entry)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20_000])
    parser.add_argument("--rounds", type=int, default=2, help="measured runs per variant and row count")
    parser.add_argument("--timeout", type=float, default=420, help="seconds per run before it is killed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, outputs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(json.loads(args.child))

    import shutil

    from featurebridge.expansion_service.process import expansion_service_process
    from featurebridge.pipelines.java_services import ServiceGroup

    load_before = _load()
    base = tempfile.mkdtemp(prefix="fb_bench_xlang_engines_")
    logs = os.path.join(base, "logs")
    os.makedirs(logs)
    build: Dict[str, object] = {}

    def _build() -> None:
        try:
            build["cp"] = _maven_build(os.path.join(logs, "mvn.log"))
        except BaseException as e:  # noqa: BLE001  (reported below)
            build["cp"] = e

    builder = threading.Thread(target=_build)
    builder.start()
    services = ServiceGroup(logs, _env(), REPO_ROOT)
    runs: List[dict] = []
    flink_log = ""
    try:
        services.start_worker_pool()
        services.start_job_server("flink", os.path.join(base, "flink_artifacts"))
        services.wait("worker_pool")
        with expansion_service_process(
            args=["--allowed_root", base, "--environment", "external", "--environment_config",
                  services.endpoint("worker_pool"), "--no_stage_project"],
            env=_env(), log_path=os.path.join(logs, "expansion_service.log"), cwd=REPO_ROOT,
        ) as server:
            services.wait("flink")
            builder.join()
            if not isinstance(build.get("cp"), str):
                raise RuntimeError(f"the Maven build failed: {build.get('cp')!r}")
            inputs = {rows: _write_inputs(base, rows) for rows in args.rows}
            bench = _Bench(base, build["cp"], services, server.address, args.timeout)
            smallest = min(args.rows)
            for variant in ("java", "python"):
                runs.append(bench.run(variant, inputs[smallest], smallest, "warm-up"))
            for rows in args.rows:
                for i in range(args.rounds):
                    order = ("java", "python") if i % 2 == 0 else ("python", "java")
                    for variant in order:
                        runs.append(bench.run(variant, inputs[rows], rows, f"round {i + 1}"))
            with open(services.logs["flink"], encoding="utf-8", errors="replace") as f:
                flink_log = f.read()
    finally:
        services.stop()
        builder.join(1)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    result = {
        "command": "python -m benchmarks.xlang_engines " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": _load(),
        "seed": SEED,
        "parallelism": PARALLELISM,
        "environment_cache_millis": CACHE_MILLIS,
        "flink_saw_parallelism_2": "(2/2)" in flink_log,
        "work_dir": base if args.keep else None,
        "summary": _summary(runs, args.rows),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
