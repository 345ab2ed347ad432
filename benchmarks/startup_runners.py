"""Start-up of a small analyze job on the DirectRunner and the PortableRunner
(job server + external worker pool): where the time from command to result goes.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python -m benchmarks.startup_runners [--rows 1000]

Prints one JSON object; figures go to benchmarks/RESULTS.md ("Start-up").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = """key: id
label: {column: label, kind: binary}
columns:
  - {name: id, type: int}
  - {name: age, type: int, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 4}]}
  - {name: income, type: float, transforms: [log1p, scale_0_1]}
  - {name: city, type: string, transforms: [vocabulary]}
  - {name: label, type: int}
"""


def _data(d: str, rows: int) -> None:
    rng = random.Random(7)
    with open(os.path.join(d, "d.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "age", "income", "city", "label"])
        for i in range(rows):
            w.writerow([i, rng.randint(18, 90), round(rng.lognormvariate(10, 1), 2),
                        rng.choice(["paris", "rome", "oslo"]), int(rng.random() < 0.3)])
    with open(os.path.join(d, "spec.yaml"), "w") as f:
        f.write(SPEC)


def _timed(cmd, env, **kw):
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, **kw)
    if r.returncode:
        raise RuntimeError(f"{cmd} failed: {r.stderr[-2000:]}")
    return round(time.monotonic() - t, 2), r


def main(argv=None) -> int:
    sys.path.insert(0, REPO)
    from featurebridge.pipelines.local_cluster import portable_cluster
    from featurebridge.pipelines.local_cluster import worker_env

    args = argparse.ArgumentParser()
    args.add_argument("--rows", type=int, default=1000)
    a = args.parse_args(argv)
    d = tempfile.mkdtemp(prefix="fb_startup_")
    env = worker_env()
    fb = [sys.executable, "-m", "featurebridge.pipelines.cli"]
    res = {"rows": a.rows}
    try:
        _data(d, a.rows)
        base = ["--input", os.path.join(d, "d.csv"), "--spec", os.path.join(d, "spec.yaml")]
        res["python_bare_s"], _ = _timed([sys.executable, "-c", "pass"], env)
        res["import_pipelines_analyze_s"], _ = _timed([sys.executable, "-c", "import featurebridge.pipelines.analyze"], env)
        res["import_tensorflow_transform_s"], _ = _timed([sys.executable, "-c", "import tensorflow_transform"], env)
        res["analyze_help_s"], _ = _timed(fb + ["analyze", "--help"], env)
        res["analyze_usage_error_s"] = _timed_fail(fb + ["analyze", "--input", "x.csv"], env)
        res["direct_s"], r = _timed(fb + ["analyze", *base, "--output", os.path.join(d, "o1")], env)
        res["direct_pipeline_s"] = _elapsed(r.stdout)
        t = time.monotonic()
        with portable_cluster(os.path.join(d, "cluster")) as c:
            res["cluster_ready_s"] = round(time.monotonic() - t, 2)
            t = time.monotonic()
            p = subprocess.Popen(fb + ["analyze", *base, "--output", os.path.join(d, "o2"), *c.pipeline_flags()],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
            while not c.harness_pids() and p.poll() is None:
                time.sleep(0.1)
            res["portable_worker_requested_s"] = round(time.monotonic() - t, 2)
            c.wait_for_harness_connected(300)
            res["portable_worker_connected_s"] = round(time.monotonic() - t, 2)
            out, err = p.communicate(timeout=600)
            res["portable_s"] = round(time.monotonic() - t, 2)
            if p.returncode:
                raise RuntimeError(err[-2000:])
            res["portable_pipeline_s"] = _elapsed(out)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(res, indent=1))
    return 0


def _elapsed(stdout: str):
    # "Analyzed N rows in X s: ..."
    for line in stdout.splitlines():
        if line.startswith("Analyzed ") and " in " in line:
            return float(line.split(" in ", 1)[1].split(" s", 1)[0])
    return None


def _timed_fail(cmd, env):
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2, r.stderr[-1000:]
    return round(time.monotonic() - t, 2)


if __name__ == "__main__":
    sys.exit(main())
