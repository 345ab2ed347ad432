"""Serving latency of the exported model, measured in a fresh TensorFlow-only process.

    python -m benchmarks.serving [--rows 5000] [--epochs 1] [--work benchmarks/out/serving]

Builds a model once with the library's own jobs on the demo data
(`featurebridge.pipelines.sample_data`: analyze -> train -> export, one epoch), writes
request payloads (serialized raw tf.Examples and the same rows as named raw
columns), then starts a NEW Python process that imports only TensorFlow,
loads ``MODEL/serving/<version>`` with ``tf.saved_model.load`` and times:

- ``serving_default`` (serialized tf.Example in): p50/p99 latency of a call
  with ONE example after a warm-up, and examples/s for batches of 1000;
- ``serving_raw`` (one dense tensor per raw column): the same two figures.

Request tensors are built before timing, so the figures are the signature
call alone (parse + TFT graph + model), on the CPU, with TensorFlow's default
thread pools. The probe checks that neither TFT, Keras nor Beam got imported.
`measure()` is what `benchmarks.run` calls; it returns a dict and a one-line
summary for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List

__all__ = ["build_model", "measure", "probe"]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REQUEST_ROWS = 1000
SINGLE_CALLS = 500
BATCH_CALLS = 20
WARMUP_CALLS = 20


def build_model(work_dir: str, rows: int = 5000, epochs: int = 1) -> Dict[str, str]:
    """Demo data -> analyze -> train + export; writes the request payloads.

    Returns {"serving": SavedModel dir, "examples": TFRecord of raw examples,
    "raw": JSON of raw columns, "seconds": build time}.
    """
    import tensorflow as tf

    from featurebridge.pipelines import analyze, train
    from featurebridge.pipelines.sample_data import generate_rows, write_sample_data
    from featurebridge.transforms.examples import rows_to_examples
    from featurebridge.transforms.serving import raw_signature_columns
    from featurebridge.transforms.spec import load_spec

    started = time.monotonic()
    shutil.rmtree(work_dir, ignore_errors=True)
    data = write_sample_data(os.path.join(work_dir, "data"), rows, num_files=1)
    analyzed = os.path.join(work_dir, "analyzed")
    model = os.path.join(work_dir, "model")
    analyze.run(["--input", data["files"][0], "--spec", data["spec"], "--output", analyzed])
    train.run(["--analyzed", analyzed, "--output", model, "--epochs", str(epochs)])
    spec = load_spec(data["spec"])
    # Requests: rows the model never saw (another seed), missing values included.
    columns = generate_rows(REQUEST_ROWS, seed=11)
    request_rows = [{k: columns[k][i] for k in columns} for i in range(REQUEST_ROWS)]
    examples_path = os.path.join(work_dir, "requests.tfrecord")
    with tf.io.TFRecordWriter(examples_path) as w:
        for ex in rows_to_examples(spec, request_rows):
            w.write(ex)
    types = {c.name: c.type for c in spec.columns}
    raw = {}
    for name in raw_signature_columns(spec):
        values = columns[name]
        if types[name] == "float":
            raw[name] = {"dtype": "float32", "values": [float("nan") if v is None else float(v) for v in values]}
        elif types[name] == "int":  # serving_raw has no missing marker for ints: the constant fill
            raw[name] = {"dtype": "int64", "values": [0 if v is None else int(v) for v in values]}
        else:
            raw[name] = {"dtype": "string", "values": ["" if v is None else str(v) for v in values]}
    raw_path = os.path.join(work_dir, "requests_raw.json")
    with open(raw_path, "w", encoding="utf-8") as f:
        json.dump(raw, f)  # NaN is written as the JS literal NaN, which json reads back
    from featurebridge.transforms.layout import serving_dir

    return {"serving": serving_dir(model), "examples": examples_path, "raw": raw_path,
            "seconds": time.monotonic() - started}


def _percentiles(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)

    def pick(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50_ms": pick(0.5) * 1e3, "p99_ms": pick(0.99) * 1e3, "mean_ms": sum(ordered) / len(ordered) * 1e3}


def probe(serving_dir: str, examples_path: str, raw_path: str) -> Dict[str, object]:
    """Runs in the fresh process: imports TensorFlow only, loads, times."""
    t0 = time.monotonic()
    import tensorflow as tf

    import_s = time.monotonic() - t0
    t0 = time.monotonic()
    loaded = tf.saved_model.load(serving_dir)
    load_s = time.monotonic() - t0
    examples = [r.numpy() for r in tf.data.TFRecordDataset(examples_path)]
    with open(raw_path, encoding="utf-8") as f:
        raw = json.load(f)
    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    raw_columns = {k: (v["values"], dtypes[v["dtype"]]) for k, v in raw.items()}

    def single_default(i):
        return {"examples": tf.constant([examples[i % len(examples)]])}

    def single_raw(i):
        j = i % len(examples)
        return {k: tf.constant(vals[j:j + 1], dtype) for k, (vals, dtype) in raw_columns.items()}

    batch_default = {"examples": tf.constant(examples[:REQUEST_ROWS])}
    batch_raw = {k: tf.constant(vals[:REQUEST_ROWS], dtype) for k, (vals, dtype) in raw_columns.items()}
    result: Dict[str, object] = {"import_tensorflow_s": import_s, "load_s": load_s,
                                 "batch_rows": len(examples[:REQUEST_ROWS])}
    for name, single, batch in (("serving_default", single_default, batch_default),
                                ("serving_raw", single_raw, batch_raw)):
        fn = loaded.signatures[name]
        requests = [single(i) for i in range(SINGLE_CALLS + WARMUP_CALLS)]
        t0 = time.monotonic()
        fn(**requests[0])
        first_call_s = time.monotonic() - t0
        for r in requests[1:WARMUP_CALLS]:
            fn(**r)
        times = []
        for r in requests[WARMUP_CALLS:]:
            t0 = time.perf_counter()
            out = fn(**r)
            times.append(time.perf_counter() - t0)
        assert all(int(v.shape[0]) == 1 for v in out.values()), "one example in, one prediction out"
        for _ in range(3):
            fn(**batch)
        t0 = time.perf_counter()
        for _ in range(BATCH_CALLS):
            out = fn(**batch)
        batch_s = time.perf_counter() - t0
        assert all(int(v.shape[0]) == len(examples[:REQUEST_ROWS]) for v in out.values())
        result[name] = {
            "first_call_s": first_call_s,
            "single": _percentiles(times),
            "single_calls": len(times),
            "batch_examples_per_s": BATCH_CALLS * len(examples[:REQUEST_ROWS]) / batch_s,
            "batch_ms": batch_s / BATCH_CALLS * 1e3,
            "outputs": sorted(out),
        }
    result["modules_imported"] = sorted(
        m for m in ("tensorflow_transform", "tf_keras", "keras", "apache_beam", "featurebridge.pipelines", "featurebridge.transforms")
        if m in sys.modules
    )
    return result


def measure(out_dir: str, rows: int = 5000, epochs: int = 1) -> Dict[str, object]:
    """Builds the model (in this process) and probes it in a fresh one.

    Returns the probe's figures plus "summary" (one Markdown line) and
    "command"; on a failed probe, {"error": ...} with the log's tail.
    """
    work = os.path.join(out_dir, "serving")
    built = build_model(work, rows=rows, epochs=epochs)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Importing TFT here set TF_USE_LEGACY_KERAS=1; a serving process has no reason to.
    env.pop("TF_USE_LEGACY_KERAS", None)
    cmd = [sys.executable, "-m", "benchmarks.serving", "--probe", built["serving"], built["examples"], built["raw"]]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": f"probe exit code {proc.returncode}", "log_tail": (proc.stdout + proc.stderr)[-3000:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["build_s"] = built["seconds"]
    result["model"] = f"wide_and_deep on the demo data ({rows:,} rows, {epochs} epoch)"
    d, r = result["serving_default"], result["serving_raw"]
    result["summary"] = (
        f"{result['model']}; fresh process importing only TensorFlow ({result['import_tensorflow_s']:.1f} s), "
        f"`tf.saved_model.load` {result['load_s']:.1f} s. serving_default (1 serialized tf.Example): "
        f"p50 {d['single']['p50_ms']:.2f} ms, p99 {d['single']['p99_ms']:.2f} ms over {d['single_calls']} calls; "
        f"batches of {result['batch_rows']}: {d['batch_examples_per_s']:,.0f} examples/s "
        f"({d['batch_ms']:.1f} ms/batch). serving_raw (named raw tensors): p50 {r['single']['p50_ms']:.2f} ms, "
        f"p99 {r['single']['p99_ms']:.2f} ms; batches of {result['batch_rows']}: "
        f"{r['batch_examples_per_s']:,.0f} examples/s ({r['batch_ms']:.1f} ms/batch). "
        f"First call after load: {d['first_call_s']:.2f} s / {r['first_call_s']:.2f} s."
    )
    with open(os.path.join(out_dir, "serving.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", nargs=3, metavar=("SERVING_DIR", "EXAMPLES", "RAW_JSON"),
                        help="(internal) time a SavedModel in this process")
    parser.add_argument("--rows", type=int, default=5000, help="demo rows to train on (default 5000)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "out"))
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return 0
    result = measure(args.out, rows=args.rows, epochs=args.epochs)
    print(result.get("summary") or json.dumps(result, indent=1))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
