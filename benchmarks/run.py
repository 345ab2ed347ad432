"""Runs the benchmark approaches side by side on the same files.

    python -m benchmarks.run --quick      # 50k and 200k rows, 1 run each (minutes)
    python -m benchmarks.run --full       # 200k, 1M and 5M rows, median of 3
    python -m benchmarks.run --sizes 1000000 --repeats 1 --approaches featurebridge,tft_arrow

Each approach runs in its own subprocess (`benchmarks.approaches`); wall time
is measured there from reading input to output written (imports excluded),
and peak RSS is the child's ru_maxrss from os.wait4 (includes its reaped
children). Slow approaches are skipped above a row limit or stopped at a time
cap and reported as such. Results go to benchmarks/out/results-<mode>.json and
a Markdown table on stdout; --write-results also replaces the generated block
in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from benchmarks.data import write_dataset

__all__ = ["main"]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA_DIR = os.path.join(HERE, "data")
OUT_DIR = os.path.join(HERE, "out")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
BEGIN, END = "<!-- throughput:begin -->", "<!-- throughput:end -->"

ORDER = ["featurebridge", "featurebridge_plain", "pyarrow", "sklearn", "spark", "tft_arrow", "tft_arrow_2proc", "tft_dicts", "mltransform"]
LABELS = {
    "featurebridge": "featurebridge analyze+transform (Parquet in)",
    "featurebridge_plain": "featurebridge, plain TFT analyzers (before issue 6)",
    "featurebridge_csv": "featurebridge analyze+transform (CSV in)",
    "pyarrow": "pyarrow one pass (rough lower bound)",
    "sklearn": "pandas + scikit-learn",
    "spark": "Spark ML local[2] (pyspark)",
    "tft_arrow": "TFT, Arrow input (ParquetTFXIO)",
    "tft_arrow_2proc": "TFT, Arrow, DirectRunner 2 processes",
    "tft_dicts": "TFT, instance dicts (getting-started)",
    "mltransform": "Beam MLTransform (TFT ops)",
}
# Largest row count each slow approach is tried at (None: no limit).
MAX_ROWS = {"quick": {"tft_dicts": 50_000, "mltransform": 50_000}, "full": {"tft_dicts": 1_000_000, "mltransform": 200_000}}


def machine() -> Dict[str, object]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def run_child(cmd: List[str], cap_s: float, log_path: str) -> Dict[str, object]:
    """Runs cmd; returns wall_s, peak_rss_mb (ru_maxrss of the child and its reaped
    children), rc, timed_out."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > cap_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": time.monotonic() - started,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rc": proc.returncode,
        "timed_out": timed_out,
    }


def run_approach(name: str, rows: int, files, cap_s: float, tag: str) -> Dict[str, object]:
    parquet, csv, spec = files
    out = os.path.join(OUT_DIR, f"{name}-{rows}")
    result_path = os.path.join(OUT_DIR, f"{name}-{rows}-{tag}.json")
    log_path = os.path.join(OUT_DIR, f"{name}-{rows}-{tag}.log")
    if os.path.exists(result_path):
        os.remove(result_path)
    cmd = [sys.executable, "-m", "benchmarks.approaches", name, "--parquet", parquet, "--csv", csv,
           "--spec", spec, "--out", out, "--result", result_path]
    child = run_child(cmd, cap_s, log_path)
    shutil.rmtree(out, ignore_errors=True)
    if child["timed_out"]:
        return {"skipped": f"stopped at the {cap_s:.0f} s cap", **child}
    if not os.path.exists(result_path):
        return {"error": f"exit code {child['rc']}; see {os.path.relpath(log_path, REPO)}", **child}
    with open(result_path) as f:
        result = json.load(f)
    if child["rc"] != 0:  # died after its measured work was done and written (see approaches.main)
        result["exit_note"] = f"exit code {child['rc']} after writing its result"
    result.update(child)
    if "work_s" in result:
        result["rows_per_s"] = rows / result["work_s"]
    return result


def cold_start(files_1k) -> Dict[str, object]:
    """`featurebridge analyze` on 1k rows, command to result, fresh process."""
    parquet, csv, spec = files_1k
    out = os.path.join(OUT_DIR, "cold-start")
    exe = os.path.join(os.path.dirname(sys.executable), "featurebridge")
    cmd = [exe, "analyze", "--input", csv, "--spec", spec, "--output", out, "--overwrite"]
    result = run_child(cmd, 600, os.path.join(OUT_DIR, "cold-start.log"))
    shutil.rmtree(out, ignore_errors=True)
    result["command"] = " ".join(["featurebridge", "analyze", "--input", os.path.relpath(csv, REPO), "--spec",
                                  os.path.relpath(spec, REPO), "--output", "OUT", "--overwrite"])
    return result


def _fmt_rate(r: Optional[Dict[str, object]]) -> str:
    if r is None:
        return "not run"
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return f"error: {r['error']}"
    cpu = f", {r['cpu_s']:.0f} s CPU" if "cpu_s" in r else ""
    died = " (†)" if "exit_note" in r else ""  # died after writing its result; see the note below the table
    return f"{r['rows_per_s'] / 1e3:,.1f}k rows/s, {r['work_s']:.1f} s{cpu}, {r['peak_rss_mb']:,.0f} MB{died}"


def table(results: Dict[str, Dict[int, Dict[str, object]]], sizes: List[int]) -> str:
    head = "| approach | " + " | ".join(
        f"{s:,} rows: rows/s, work wall, process CPU, peak RSS | featurebridge speed-up" for s in sizes) + " |"
    sep = "|---|" + "---|---|" * len(sizes)
    lines = [head, sep]
    for name in [n for n in dict.fromkeys(ORDER + sorted(results)) if n in results]:
        cells = []
        for s in sizes:
            r = results[name].get(s)
            fb = results.get("featurebridge", {}).get(s)
            ratio = ""
            if r and fb and "rows_per_s" in r and "rows_per_s" in fb:
                ratio = f"{fb['rows_per_s'] / r['rows_per_s']:.2f}x"  # > 1: featurebridge is faster
            cells.append(f"{_fmt_rate(r)} | {ratio}")
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def median_result(runs: List[Dict[str, object]]) -> Dict[str, object]:
    ok = [r for r in runs if "work_s" in r and "error" not in r]
    if not ok:
        return runs[-1]
    ok.sort(key=lambda r: r["work_s"])
    mid = dict(ok[len(ok) // 2])
    mid["runs_work_s"] = [round(r["work_s"], 2) for r in ok]
    mid["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    return mid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="50k and 200k rows, one run each (default)")
    mode.add_argument("--full", action="store_true", help="200k, 1M and 5M rows, median of 3")
    parser.add_argument("--sizes", help="comma-separated row counts (overrides the mode's)")
    parser.add_argument("--repeats", type=int, help="runs per approach and size (median reported)")
    parser.add_argument("--approaches", help=f"comma-separated subset of {ORDER + ['featurebridge_csv']}")
    parser.add_argument("--cap", type=float, default=600, help="seconds before a run is stopped (default 600)")
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--no-serving", action="store_true", help="skip the serving latency measurement")
    parser.add_argument("--write-results", action="store_true", help="replace the generated block in RESULTS.md")
    parser.add_argument("--from-json", metavar="RESULTS_JSON",
                        help="re-render a saved benchmarks/out/results-*.json (no runs); with --write-results")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        info = saved["info"]
        results = {n: {int(k): v for k, v in r.items()} for n, r in saved["results"].items()}
        md = table(results, info["sizes"])
        print(md)
        if args.write_results:
            _write_block(info, md)
        return 0
    mode_name = "full" if args.full else "quick"
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [200_000, 1_000_000, 5_000_000] if args.full else [50_000, 200_000])
    repeats = args.repeats or (3 if args.full else 1)
    names = args.approaches.split(",") if args.approaches else ORDER
    max_rows = MAX_ROWS[mode_name]
    os.makedirs(OUT_DIR, exist_ok=True)
    info = {"mode": mode_name, "sizes": sizes, "repeats": repeats, "machine": machine(),
            "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"machine: {info['machine']}", flush=True)
    results: Dict[str, Dict[int, Dict[str, object]]] = {n: {} for n in names}
    for rows in sizes:
        files = write_dataset(rows, DATA_DIR)
        for name in names:
            if max_rows.get(name) and rows > max_rows[name]:
                results[name][rows] = {"skipped": f"too slow above {max_rows[name]:,} rows (see RESULTS.md)"}
                continue
            runs = []
            for i in range(repeats):
                r = run_approach(name, rows, files, args.cap, str(i))
                runs.append(r)
                print(f"{rows:>9,} {name:<16} run {i + 1}/{repeats}: {_fmt_rate(r)}", flush=True)
                if "skipped" in r or "error" in r:
                    break
            results[name][rows] = median_result(runs)
    if not args.no_cold_start:
        info["cold_start"] = cold_start(write_dataset(1_000, DATA_DIR))
        print(f"cold start (1k rows, CLI command to result): {info['cold_start']['wall_s']:.1f} s, "
              f"{info['cold_start']['peak_rss_mb']:,.0f} MB peak RSS", flush=True)
    if not args.no_serving:
        # Train + export once on the demo data, then time the SavedModel in a fresh
        # TensorFlow-only process (benchmarks.serving); its own subprocess so this
        # runner never imports TensorFlow.
        serving_json = os.path.join(OUT_DIR, "serving.json")
        if os.path.exists(serving_json):
            os.remove(serving_json)
        child = run_child([sys.executable, "-m", "benchmarks.serving", "--out", OUT_DIR], 1800,
                          os.path.join(OUT_DIR, "serving.log"))
        if child["rc"] == 0 and os.path.exists(serving_json):
            with open(serving_json) as f:
                info["serving"] = json.load(f)
        else:
            info["serving"] = {"summary": f"not measured: exit code {child['rc']}; see benchmarks/out/serving.log"}
        print(f"serving: {info['serving']['summary']}", flush=True)
    info["machine"]["load_average_after"] = os.getloadavg()
    md = table(results, sizes)
    print("\n" + md)
    path = os.path.join(OUT_DIR, f"results-{mode_name}.json")
    with open(path, "w") as f:
        json.dump({"info": info, "results": {n: {str(k): v for k, v in r.items()} for n, r in results.items()}}, f, indent=1)
    print(f"\nwrote {os.path.relpath(path, REPO)}")
    if args.write_results:
        _write_block(info, md)
    return 0


def _write_block(info, md) -> None:
    m = info["machine"]
    block = "\n".join([
        BEGIN,
        f"Generated by `{info['command']}` ({info['mode']} mode, median of {info['repeats']}).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Python {m['python']}; load average "
        f"before {tuple(round(x, 2) for x in m['load_average'])}, after "
        f"{tuple(round(x, 2) for x in m['load_average_after'])} (other engineers share this box).",
        "",
        md,
        "",
        ("(†) exited with a signal after writing its result (TensorFlow/Beam teardown); its work time stands."
         if "(†)" in md else ""),
        (f"Cold start, 1k-row CSV, `{info['cold_start']['command']}`: {info['cold_start']['wall_s']:.1f} s "
         f"command to result, {info['cold_start']['peak_rss_mb']:,.0f} MB peak RSS." if "cold_start" in info else ""),
        (f"Serving latency (`python -m benchmarks.serving`): {info['serving']['summary']}"
         if "serving" in info else ""),
        END,
    ])
    text = open(RESULTS_MD).read() if os.path.exists(RESULTS_MD) else "# Benchmark results\n\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(RESULTS_MD, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
