"""Profiles one featurebridge analyze run with cProfile and groups the time.

    python -m benchmarks.profile --rows 200000 [--text] [--top 40] [-- extra analyze flags]

DirectRunner's embedded FnApi worker runs bundles on the calling thread, so
cProfile sees the DoFns, TF graph runs, combiners and writers. Prints the top
functions by own time and a summary by category (regex on file/function).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time

from benchmarks.data import write_dataset, write_text_dataset

__all__ = ["main", "CATEGORIES"]

# First match wins; patterns are matched against "file:function".
CATEGORIES = [
    ("TF graph runs (session/function calls, C++ kernels)", r"tensorflow/python/(client|eager|framework/func|util/dispatch)|_pywrap_tf_session|TF_SessionRun|quick_execute"),
    ("TF tracing / SavedModel load+save", r"tensorflow/python/(framework|ops|saved_model|trackable|autograph|module)|tensorflow/core"),
    ("TFT vocabulary combine per token", r"tensorflow_transform/beam/(analyzer_impls|combiner_packing)|_VocabCount|CombinePerKey|_count_and_token|vocabulary"),
    ("TFT analyzers / combiners / quantiles", r"tensorflow_transform/beam/analyzer|tfx_bsl/sketches|tensorflow_transform/analyzers|tfx_bsl/coders"),
    ("TFT impl (batching, DoFns, tensor<->arrow)", r"tensorflow_transform|tfx_bsl"),
    ("tf.Example encoding + TFRecord/gzip write", r"tfrecordio|filebasedsink|gzip|zlib|crc32|apache_beam/io/"),
    ("featurebridge reader/validation (transforms/io.py)", r"transforms/io\.py"),
    ("pyarrow / numpy", r"pyarrow|numpy"),
    ("Beam per-element overhead (coders, operations, runner)", r"apache_beam|cython|\.pyx"),
]


def categorize(stats: pstats.Stats):
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["other"] = 0.0
    for (filename, _, func), (_, _, tottime, _, _) in stats.stats.items():
        key = f"{filename}:{func}"
        for name, pattern in CATEGORIES:
            if re.search(pattern, key):
                totals[name] += tottime
                break
        else:
            totals["other"] += tottime
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--text", action="store_true", help="the text spec (tf-idf) instead of the main one")
    parser.add_argument("--save", help="write the raw pstats here")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    here = os.path.dirname(os.path.abspath(__file__))
    writer = write_text_dataset if args.text else write_dataset
    parquet, csv, spec = writer(args.rows, os.path.join(here, "data"))
    from featurebridge.pipelines import analyze  # import cost is not profiled

    out = os.path.join(here, "out", "profile")
    profiler = cProfile.Profile()
    started = time.monotonic()
    profiler.enable()
    analyze.run(["--input", parquet if args.format == "parquet" else csv, "--spec", spec, "--output", out,
                 "--overwrite", *extra])
    profiler.disable()
    wall = time.monotonic() - started
    stats = pstats.Stats(profiler)
    if args.save:
        stats.dump_stats(args.save)
    total = sum(v[2] for v in stats.stats.values())
    print(f"{args.rows:,} rows, wall {wall:.1f} s under cProfile (profiled own time {total:.1f} s)")
    print("\nBy category (own time):")
    for name, seconds in sorted(categorize(stats).items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:7.1f} s  {100 * seconds / total:5.1f}%  {name}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
