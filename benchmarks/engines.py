"""`featurebridge analyze` on the DirectRunner, embedded Flink and Spark local[2],
side by side in one run, command to result (imports, JVM and worker start-up
included, as a user pays them).

    make engines
    PATH=$PWD/.venv/bin:$PATH .venv/bin/python -m benchmarks.engines --rows 1000 200000

Prints one JSON object: seconds per (rows, engine) and each engine's ratio to the
DirectRunner. Figures go to benchmarks/RESULTS.md ("Flink and Spark").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.startup_runners import _data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "direct": "runner_configs/direct.yaml",
    "flink": "runner_configs/flink-local.yaml",
    "spark": "runner_configs/spark-local.yaml",
}


def _analyze(data_dir: str, out: str, config: str, env) -> float:
    cmd = [
        sys.executable, "-m", "featurebridge.pipelines.cli", "analyze", "--input", os.path.join(data_dir, "d.csv"),
        "--spec", os.path.join(data_dir, "spec.yaml"), "--output", out, "--runner_config", config,
    ]
    started = time.monotonic()
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"{config} failed:\n{result.stderr[-3000:]}")
    return round(time.monotonic() - started, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 200_000])
    parser.add_argument("--engines", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    results = {"cores": os.cpu_count(), "runs": []}
    base = tempfile.mkdtemp(prefix="fb_bench_engines_")
    try:
        for rows in args.rows:
            data_dir = os.path.join(base, f"rows{rows}")
            os.makedirs(data_dir)
            _data(data_dir, rows)
            seconds = {}
            for engine in args.engines:
                seconds[engine] = _analyze(data_dir, os.path.join(data_dir, f"out_{engine}"), CONFIGS[engine], env)
                print(f"{rows} rows, {engine}: {seconds[engine]} s", file=sys.stderr, flush=True)
            direct = seconds.get("direct")
            results["runs"].append({
                "rows": rows,
                "seconds": seconds,
                "ratio_to_direct": {e: round(s / direct, 2) for e, s in seconds.items()} if direct else None,
                "rows_per_second": {e: round(rows / s) for e, s in seconds.items()},
            })
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
