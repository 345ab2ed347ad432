"""Runs the benchmark approaches side by side on the same files and checks the targets.

    python -m benchmarks.run --quick      # 50k and 200k rows, text spec at 200k, 1 run each (~10 min)
    python -m benchmarks.run --full       # 200k, 1M and 5M rows, text spec at 1M, 1 run each (~35 min)
    python -m benchmarks.run --sizes 1000000 --repeats 3 --approaches featurebridge,tft_arrow

What one run does:

- the main spec (`benchmarks.data`: 8 z-scores with mean fill, 4 vocabularies,
  10 quantile buckets) at each size, every approach of `ORDER`; slow ones
  are skipped above `MAX_ROWS` (in full mode: tft_dicts, mltransform,
  tft_arrow_2proc and featurebridge_plain above 200k rows);
- the text spec (tf-idf over a free-text column, z-scores, buckets,
  vocabularies) at `--text-sizes`, featurebridge and TFT's Arrow path;
- cold start: `featurebridge analyze` on a 1k-row CSV and a plain TFT job
  (tfx_bsl's CsvTFXIO, `benchmarks.approaches tft_csv`) on the same CSV, each
  a fresh process;
- serving latency of the exported model (`benchmarks.serving`).

Every approach runs in its own subprocess (`benchmarks.approaches`). Two
times per run: **command to result**, the whole process as a user waits for
it (interpreter start, imports, JVM start, work, exit), measured here; and
**work**, input read to output written, measured inside the child. Speed-ups
are featurebridge's on both (the approach's seconds / featurebridge's; > 1:
featurebridge is faster). Peak RSS is the larger of the child's ru_maxrss
from os.wait4 (its reaped children included) and the sum of the RSS of its
process group sampled every 0.5 s (Spark's JVM, Beam's worker processes; pages
shared between processes count once per process, so a multi-process figure
is an upper bound). With --repeats N each figure is the median of N runs (RSS: the largest).

Results go to benchmarks/out/results-<mode>.json and Markdown on stdout;
--write-results also replaces the generated blocks of benchmarks/RESULTS.md
(throughput and targets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from benchmarks.data import write_dataset, write_text_dataset

__all__ = ["main", "targets", "targets_table"]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA_DIR = os.path.join(HERE, "data")
OUT_DIR = os.path.join(HERE, "out")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
BLOCKS = {
    "throughput": ("<!-- throughput:begin -->", "<!-- throughput:end -->"),
    "targets": ("<!-- targets:begin -->", "<!-- targets:end -->"),
}

ORDER = ["featurebridge", "featurebridge_plain", "pyarrow", "sklearn", "spark", "tft_arrow", "tft_arrow_2proc",
         "tft_dicts", "mltransform"]
# The approaches that follow any spec file (the others hard-code the main spec's columns).
TEXT_APPROACHES = ["featurebridge", "tft_arrow"]
LABELS = {
    "featurebridge": "featurebridge analyze+transform (Parquet in)",
    "featurebridge_plain": "featurebridge, plain TFT analyzers (`--analyzer tft`)",
    "featurebridge_csv": "featurebridge analyze+transform (CSV in)",
    "pyarrow": "pyarrow one pass (rough lower bound)",
    "sklearn": "pandas + scikit-learn",
    "spark": "Spark ML local[2] (pyspark)",
    "tft_arrow": "TFT, Arrow input (ParquetTFXIO)",
    "tft_arrow_2proc": "TFT, Arrow, DirectRunner 2 processes",
    "tft_csv": "TFT, CSV input (CsvTFXIO)",
    "tft_dicts": "TFT, instance dicts (getting-started)",
    "mltransform": "Beam MLTransform (TFT ops)",
}
SLOW = ("tft_dicts", "mltransform", "tft_arrow_2proc", "featurebridge_plain")
# Largest row count each slow approach is tried at (absent: no limit).
MAX_ROWS = {
    "quick": {"tft_dicts": 50_000, "mltransform": 50_000},
    "full": {name: 200_000 for name in SLOW},
}
MODES = {
    # sizes, text sizes, default repeats
    "quick": ([50_000, 200_000], [200_000], 1),
    # One run per cell: three runs of every cell take ~1.5 h on 2 cores (see RESULTS.md).
    "full": ([200_000, 1_000_000, 5_000_000], [1_000_000], 1),
}
COLD_START_ROWS = 1_000
RSS_SAMPLE_S = 0.5

# The targets of issue 14 (checked by `targets`).
RSS_LIMIT_MB = 1_500  # MiB, like every RSS figure here
RSS_FLAT_RATIO = 1.25  # peak RSS at 5M rows / at 200k rows


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
    java = shutil.which("java")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "java": _java_version() if java else "none",
        "load_average": os.getloadavg(),
    }


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0].strip() if lines else "?"


def _group_rss_mb(sid: int) -> float:
    """Sum of the resident memory of every process in session `sid` (Linux /proc)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()  # fields[0] is field 3 (state) of proc(5)
        if len(fields) > 21 and int(fields[3]) == sid:
            total += int(fields[21])
    return total * page / 2**20


def run_child(cmd: List[str], cap_s: float, log_path: str) -> Dict[str, object]:
    """Runs cmd in a new session; returns wall_s (command to result),
    peak_rss_mb (the largest of ru_maxrss and the session's summed RSS),
    cpu_s (user + sys of the child and its reaped children), rc, timed_out."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    group_peak = 0.0
    next_sample = started + RSS_SAMPLE_S
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if now - started > cap_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            if now >= next_sample:
                group_peak = max(group_peak, _group_rss_mb(proc.pid))
                next_sample = now + RSS_SAMPLE_S
            time.sleep(0.05)
    wall = time.monotonic() - started
    # Whatever the child left behind in its group (a JVM, a worker) goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss / 1024
    return {
        "wall_s": wall,
        "peak_rss_mb": max(maxrss, group_peak),
        "maxrss_mb": maxrss,
        "group_rss_mb": group_peak,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rc": proc.returncode,
        "timed_out": timed_out,
    }


def _rel(path: str) -> str:
    return os.path.relpath(path, REPO)


def run_approach(name: str, rows: int, files, cap_s: float, tag: str, dataset: str = "main") -> Dict[str, object]:
    parquet, csv, spec = files
    stem = f"{name}-{dataset}-{rows}"
    out = os.path.join(OUT_DIR, stem)
    result_path = os.path.join(OUT_DIR, f"{stem}-{tag}.json")
    log_path = os.path.join(OUT_DIR, f"{stem}-{tag}.log")
    if os.path.exists(result_path):
        os.remove(result_path)
    cmd = [sys.executable, "-m", "benchmarks.approaches", name, "--parquet", parquet, "--csv", csv,
           "--spec", spec, "--out", out, "--result", result_path]
    child = run_child(cmd, cap_s, log_path)
    shutil.rmtree(out, ignore_errors=True)
    shown = " ".join(["python -m benchmarks.approaches", name, "--parquet", _rel(parquet), "--csv", _rel(csv),
                      "--spec", _rel(spec), "--out", "OUT", "--result", "R.json"])
    child["command"] = shown
    if child["timed_out"]:
        return {"skipped": f"stopped at the {cap_s:.0f} s cap", **child}
    if not os.path.exists(result_path):
        return {"error": f"exit code {child['rc']}; see {_rel(log_path)}", **child}
    with open(result_path) as f:
        result = json.load(f)
    if child["rc"] != 0:  # died after its measured work was done and written (see approaches.main)
        result["exit_note"] = f"exit code {child['rc']} after writing its result"
    result.update(child)
    if "work_s" in result:
        result["rows_per_s"] = rows / result["work_s"]
    return result


def median_result(runs: List[Dict[str, object]]) -> Dict[str, object]:
    """One result from repeated runs: the median of each time, the largest RSS."""
    ok = [r for r in runs if "work_s" in r and "error" not in r and "skipped" not in r]
    if not ok:
        return runs[-1]
    out = dict(ok[0])
    for key in ("wall_s", "work_s", "cpu_s"):
        values = [r[key] for r in ok if key in r]
        if values:
            out[key] = statistics.median(values)
            out[f"runs_{key}"] = [round(v, 2) for v in values]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    if "rows_per_s" in out:
        out["rows_per_s"] = ok[0]["rows_per_s"] * ok[0]["work_s"] / out["work_s"]
    return out


def cold_start(files_1k, repeats: int) -> Dict[str, object]:
    """`featurebridge analyze` and a plain TFT job (`tft_csv`) on the same 1k-row
    CSV, each a fresh process, command to result (median of `repeats`)."""
    parquet, csv, spec = files_1k
    out = os.path.join(OUT_DIR, "cold-start")
    exe = os.path.join(os.path.dirname(sys.executable), "featurebridge")
    fb_runs, tft_runs = [], []
    for i in range(repeats):
        fb = run_child([exe, "analyze", "--input", csv, "--spec", spec, "--output", out, "--overwrite"], 600,
                       os.path.join(OUT_DIR, f"cold-start-featurebridge-{i}.log"))
        shutil.rmtree(out, ignore_errors=True)
        if fb["rc"] == 0:
            fb["work_s"] = fb["wall_s"]  # the median below wants a work time; a CLI run has none of its own
        else:
            fb["error"] = f"exit code {fb['rc']}; see benchmarks/out/cold-start-featurebridge-{i}.log"
        fb_runs.append(fb)
        tft_runs.append(run_approach("tft_csv", COLD_START_ROWS, files_1k, 600, str(i), dataset="cold"))
    fb, tft = median_result(fb_runs), median_result(tft_runs)
    fb.pop("work_s", None)
    fb.pop("runs_work_s", None)
    fb["command"] = " ".join(["featurebridge analyze --input", _rel(csv), "--spec", _rel(spec), "--output OUT",
                              "--overwrite"])
    result = {"rows": COLD_START_ROWS, "featurebridge": fb, "tft": tft}
    if "error" not in fb and "wall_s" in tft and "error" not in tft and "skipped" not in tft:
        result["ratio"] = fb["wall_s"] / tft["wall_s"]
    return result


# --- Markdown ------------------------------------------------------------------


def _ok(r: Optional[Dict[str, object]]) -> bool:
    return bool(r) and "work_s" in r and "wall_s" in r and "error" not in r and "skipped" not in r


def _why_not(r: Optional[Dict[str, object]]) -> str:
    if r is None:
        return "not run"
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return f"error: {r['error']}"
    return "no result"


def _speedup(r, fb, key: str) -> str:
    if _ok(r) and _ok(fb) and r is not fb and fb[key] > 0:
        return f"{r[key] / fb[key]:.2f}x"
    return ""


def size_table(results: Dict[str, Dict[int, Dict[str, object]]], rows: int) -> str:
    head = ("| approach | command to result | work | rows/s (work) | process CPU | peak RSS | "
            "featurebridge speed-up, command to result | featurebridge speed-up, work |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    fb = results.get("featurebridge", {}).get(rows)
    for name in [n for n in dict.fromkeys(ORDER + sorted(results)) if n in results and rows in results[n]]:
        r = results[name][rows]
        label = LABELS.get(name, name)
        if not _ok(r):
            lines.append(f"| {label} | {_why_not(r)} | | | | | | |")
            continue
        died = " (†)" if "exit_note" in r else ""  # died after writing its result; see the note below
        lines.append(
            f"| {label}{died} | {r['wall_s']:.1f} s | {r['work_s']:.1f} s | {r['rows_per_s'] / 1e3:,.1f}k | "
            f"{r['cpu_s']:.0f} s | {r['peak_rss_mb']:,.0f} MB | {_speedup(r, fb, 'wall_s')} | "
            f"{_speedup(r, fb, 'work_s')} |")
    return "\n".join(lines)


def tables(results, sizes: List[int], title: str) -> str:
    parts = []
    for rows in sizes:
        parts += [f"**{title}, {rows:,} rows**", "", size_table(results, rows), ""]
    return "\n".join(parts).rstrip("\n")


def _cold_start_md(cold: Dict[str, object]) -> str:
    if "featurebridge" not in cold:  # a results JSON from before issue 14
        return (f"Cold start, 1k-row CSV, `{cold.get('command', '?')}`: {cold['wall_s']:.1f} s command to result, "
                f"{cold['peak_rss_mb']:,.0f} MB peak RSS.")
    fb, tft = cold["featurebridge"], cold["tft"]

    def one(r):
        if "error" in r or "skipped" in r or "wall_s" not in r:
            return _why_not(r)
        work = f", work {r['work_s']:.1f} s" if "work_s" in r else ""
        return f"{r['wall_s']:.1f} s command to result{work}, {r['peak_rss_mb']:,.0f} MB peak RSS"

    ratio = f" featurebridge / TFT: **{cold['ratio']:.2f}**." if "ratio" in cold else ""
    return (f"Cold start, the same {cold['rows']:,}-row CSV, fresh process each: `{fb['command']}` {one(fb)}; "
            f"plain TFT (`{tft.get('command', 'tft_csv')}`) {one(tft)}.{ratio}")


def _rss_md(results) -> str:
    fb = results.get("featurebridge", {})
    cells = [f"{rows:,} rows {fb[rows]['peak_rss_mb']:,.0f} MB" for rows in sorted(fb) if _ok(fb[rows])]
    if not cells:
        return ""
    text = "featurebridge peak RSS (main spec): " + ", ".join(cells)
    if _ok(fb.get(200_000)) and _ok(fb.get(5_000_000)):
        text += f"; 5M / 200k: {fb[5_000_000]['peak_rss_mb'] / fb[200_000]['peak_rss_mb']:.2f}"
    return text + "."


# --- targets ---------------------------------------------------------------------


def _vs(name: str, rows: int, results, need: float, what: str) -> Tuple[str, str]:
    """(measured, status) for 'featurebridge >= need x `name` at `rows`' (command to result)."""
    fb, r = results.get("featurebridge", {}).get(rows), results.get(name, {}).get(rows)
    if fb is None or r is None:
        return f"{rows:,} rows not in this run", "not measured"
    for who, x in (("featurebridge", fb), (what, r)):
        if not _ok(x):
            return f"{who}: {_why_not(x)}", "not measured"
    cmd, work = r["wall_s"] / fb["wall_s"], r["work_s"] / fb["work_s"]
    measured = (f"command to result {fb['wall_s']:.1f} s vs {r['wall_s']:.1f} s: **{cmd:.2f}x**; "
                f"work {fb['work_s']:.1f} s vs {r['work_s']:.1f} s: {work:.2f}x")
    return measured, "met" if cmd >= need else "not met"


def targets(info: Dict[str, object], results, text_results) -> List[Dict[str, str]]:
    """The issue-14 targets, each {target, measured, status}; status is "met",
    "not met" or "not measured" (its size or approach not in this run, or the
    approach failed). Speed-ups decide on command to result; work is shown."""
    rows = []

    def add(target, measured_status):
        rows.append({"target": target, "measured": measured_status[0], "status": measured_status[1]})

    add("1M rows: featurebridge >= 5x plain TFT's Arrow path",
        _vs("tft_arrow", 1_000_000, results, 5, "TFT Arrow"))
    add("1M rows: featurebridge >= 3x Spark ML local[2]", _vs("spark", 1_000_000, results, 3, "Spark"))
    fb, pa_ = results.get("featurebridge", {}).get(1_000_000), results.get("pyarrow", {}).get(1_000_000)
    if fb is None or pa_ is None:
        add("1M rows: within 3x of the pyarrow one pass (pyarrow time / featurebridge time >= 1/3)",
            ("1,000,000 rows not in this run", "not measured"))
    elif not (_ok(fb) and _ok(pa_)):
        add("1M rows: within 3x of the pyarrow one pass (pyarrow time / featurebridge time >= 1/3)",
            (f"featurebridge: {_why_not(fb) if not _ok(fb) else 'ok'}; pyarrow: "
             f"{_why_not(pa_) if not _ok(pa_) else 'ok'}", "not measured"))
    else:
        cmd, work = pa_["wall_s"] / fb["wall_s"], pa_["work_s"] / fb["work_s"]
        add("1M rows: within 3x of the pyarrow one pass (pyarrow time / featurebridge time >= 1/3)",
            (f"command to result pyarrow {pa_['wall_s']:.1f} s / featurebridge {fb['wall_s']:.1f} s = **{cmd:.2f}** "
             f"(featurebridge {1 / cmd:.1f}x slower); work {pa_['work_s']:.1f} / {fb['work_s']:.1f} s = {work:.2f} "
             f"({1 / work:.1f}x slower)", "met" if cmd >= 1 / 3 else "not met"))
    add("5M rows: featurebridge >= 10x plain TFT's Arrow path",
        _vs("tft_arrow", 5_000_000, results, 10, "TFT Arrow"))
    add("text spec (tf-idf), 1M rows: featurebridge >= 5x plain TFT's Arrow path",
        _vs("tft_arrow", 1_000_000, text_results, 5, "TFT Arrow"))
    add(f"peak RSS <= {RSS_LIMIT_MB:,} MB at every size and flat from 200k to 5M rows "
        f"(5M / 200k <= {RSS_FLAT_RATIO})", _rss_target(results))
    add("cold start, 1k-row CSV: featurebridge <= 1/3 of a plain TFT job (command to result)",
        _cold_target(info.get("cold_start")))
    return rows


def _rss_target(results) -> Tuple[str, str]:
    fb = results.get("featurebridge", {})
    measured = {rows: fb[rows]["peak_rss_mb"] for rows in sorted(fb) if _ok(fb[rows])}
    if not measured:
        return "featurebridge not measured at any size", "not measured"
    text = ", ".join(f"{rows:,}: {mb:,.0f} MB" for rows, mb in measured.items())
    over = [rows for rows, mb in measured.items() if mb > RSS_LIMIT_MB]
    if 200_000 in measured and 5_000_000 in measured:
        ratio = measured[5_000_000] / measured[200_000]
        text += f"; 5M / 200k = **{ratio:.2f}**"
        return text, "met" if not over and ratio <= RSS_FLAT_RATIO else "not met"
    if over:
        return text + f"; over {RSS_LIMIT_MB:,} MB at {', '.join(f'{r:,}' for r in over)} rows", "not met"
    return text + "; 200k and 5M not both in this run", "not measured"


def _cold_target(cold) -> Tuple[str, str]:
    if not cold:
        return "cold start not run (--no-cold-start)", "not measured"
    if "featurebridge" not in cold:
        return f"featurebridge {cold['wall_s']:.1f} s; no TFT job in this run", "not measured"
    fb, tft = cold["featurebridge"], cold["tft"]
    if "ratio" not in cold:
        return f"featurebridge: {_why_not(fb) if 'error' in fb else 'ok'}; TFT: {_why_not(tft)}", "not measured"
    return (f"featurebridge {fb['wall_s']:.1f} s vs TFT {tft['wall_s']:.1f} s: **{cold['ratio']:.2f}** "
            f"(TFT job's work {tft['work_s']:.1f} s)", "met" if cold["ratio"] <= 1 / 3 else "not met")


def targets_table(rows: List[Dict[str, str]]) -> str:
    lines = ["| target | measured | status |", "|---|---|---|"]
    for r in rows:
        status = {"met": "**met**", "not met": "**not met**"}.get(r["status"], r["status"])
        lines.append(f"| {r['target']} | {r['measured']} | {status} |")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="50k and 200k rows, text at 200k, 1 run (default)")
    mode.add_argument("--full", action="store_true", help="200k, 1M and 5M rows, text at 1M, 1 run")
    parser.add_argument("--sizes", help="comma-separated row counts of the main spec (overrides the mode's)")
    parser.add_argument("--text-sizes", help="comma-separated row counts of the text spec; 0 for none")
    parser.add_argument("--repeats", type=int, help="runs per approach and size (median reported); default 1")
    parser.add_argument("--approaches", help=f"comma-separated subset of {ORDER + ['featurebridge_csv']}")
    parser.add_argument("--cap", type=float, default=600, help="seconds before a run is stopped (default 600)")
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--no-serving", action="store_true", help="skip the serving latency measurement")
    parser.add_argument("--note", help="a line written under the generated blocks' heading (e.g. 'smoke run')")
    parser.add_argument("--write-results", action="store_true", help="replace the generated blocks in RESULTS.md")
    parser.add_argument("--from-json", metavar="RESULTS_JSON",
                        help="re-render a saved benchmarks/out/results-*.json (no runs); with --write-results")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        info, results, text_results = _load(saved)
        if args.note:
            info["note"] = args.note
        _render(info, results, text_results, args.write_results)
        return 0

    mode_name = "full" if args.full else "quick"
    mode_sizes, mode_text_sizes, mode_repeats = MODES[mode_name]
    sizes = _sizes(args.sizes) if args.sizes else mode_sizes
    text_sizes = _sizes(args.text_sizes) if args.text_sizes else mode_text_sizes
    repeats = args.repeats or mode_repeats
    names = args.approaches.split(",") if args.approaches else ORDER
    text_names = [n for n in TEXT_APPROACHES if n in names]
    max_rows = MAX_ROWS[mode_name]
    os.makedirs(OUT_DIR, exist_ok=True)
    started = time.monotonic()
    info = {"mode": mode_name, "sizes": sizes, "text_sizes": text_sizes, "repeats": repeats, "machine": machine(),
            "command": shlex.join(["python", "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
            "max_rows": max_rows}
    if args.note:
        info["note"] = args.note
    print(f"machine: {info['machine']}", flush=True)

    def run_set(dataset, writer, set_sizes, set_names):
        out: Dict[str, Dict[int, Dict[str, object]]] = {n: {} for n in set_names}
        for rows in set_sizes:
            files = writer(rows, DATA_DIR)
            for name in set_names:
                if max_rows.get(name) and rows > max_rows[name]:
                    out[name][rows] = {"skipped": f"too slow above {max_rows[name]:,} rows in {mode_name} mode"}
                    continue
                runs = []
                for i in range(repeats):
                    r = run_approach(name, rows, files, args.cap, str(i), dataset)
                    runs.append(r)
                    print(f"{dataset:<5} {rows:>9,} {name:<20} run {i + 1}/{repeats}: {_progress(r)}", flush=True)
                    if not _ok(r):
                        break
                out[name][rows] = median_result(runs)
        return out

    results = run_set("main", write_dataset, sizes, names)
    text_results = run_set("text", write_text_dataset, text_sizes, text_names) if text_names else {}
    if not args.no_cold_start:
        info["cold_start"] = cold_start(write_dataset(COLD_START_ROWS, DATA_DIR), repeats)
        print(_cold_start_md(info["cold_start"]), flush=True)
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
    info["elapsed_s"] = time.monotonic() - started
    path = os.path.join(OUT_DIR, f"results-{mode_name}.json")
    with open(path, "w") as f:
        json.dump({"info": info, "results": {"main": _keyed(results), "text": _keyed(text_results)}}, f, indent=1)
    _render(info, results, text_results, args.write_results)
    print(f"\nwrote {_rel(path)} ({info['elapsed_s'] / 60:.1f} min in all)")
    return 0


def _sizes(text: str) -> List[int]:
    return [int(s) for s in text.split(",") if s.strip() and int(s) > 0]


def _keyed(results):
    return {n: {str(k): v for k, v in r.items()} for n, r in results.items()}


def _unkeyed(results):
    return {n: {int(k): v for k, v in r.items()} for n, r in results.items()}


def _load(saved):
    """(info, main results, text results) of a saved JSON, this format or issue 6's."""
    info, results = saved["info"], saved["results"]
    if "main" in results and isinstance(results["main"], dict) and "text" in results:
        return info, _unkeyed(results["main"]), _unkeyed(results["text"])
    info.setdefault("text_sizes", [])
    return info, _unkeyed(results), {}


def _progress(r) -> str:
    if not _ok(r):
        return _why_not(r)
    return (f"command to result {r['wall_s']:.1f} s, work {r['work_s']:.1f} s, {r['cpu_s']:.0f} s CPU, "
            f"{r['peak_rss_mb']:,.0f} MB")


def _render(info, results, text_results, write: bool) -> None:
    throughput = throughput_md(info, results, text_results)
    target_md = targets_md(info, results, text_results)
    print("\n" + throughput + "\n\n" + target_md)
    if write:
        write_block("throughput", throughput)
        write_block("targets", target_md)
        print(f"\nreplaced the generated blocks in {_rel(RESULTS_MD)}")


def _header(info) -> List[str]:
    m = info["machine"]
    after = m.get("load_average_after")
    load = (f"load average before {tuple(round(x, 2) for x in m['load_average'])}"
            + (f", after {tuple(round(x, 2) for x in after)}" if after else ""))
    lines = [
        f"Generated by `{info['command']}` ({info['mode']} mode limits, median of {info['repeats']}"
        + (f", {info['elapsed_s'] / 60:.0f} min in all" if "elapsed_s" in info else "") + ").",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Python {m['python']}, "
        f"Java: {m.get('java', '?')}; {load} (other engineers may share this box).",
    ]
    if info.get("note"):
        lines.append(f"**{info['note']}**")
    return lines


def throughput_md(info, results, text_results) -> str:
    parts = _header(info) + [""]
    parts += [tables(results, info["sizes"], "Main spec"), ""]
    if text_results and info.get("text_sizes"):
        parts += [tables(text_results, info["text_sizes"], "Text spec (tf-idf)"), ""]
    every = [r for res in (results, text_results) for by in res.values() for r in by.values()]
    if any("exit_note" in r for r in every):
        parts.append("(†) exited with a signal after writing its result (TensorFlow/Beam teardown); "
                     "its work time stands.")
    if "cold_start" in info:
        parts.append(_cold_start_md(info["cold_start"]))
    if _rss_md(results):
        parts.append(_rss_md(results))
    if "serving" in info:
        parts.append(f"Serving latency (`python -m benchmarks.serving`): {info['serving']['summary']}")
    return "\n".join(parts).rstrip("\n")


def targets_md(info, results, text_results) -> str:
    parts = _header(info) + [
        "",
        targets_table(targets(info, results, text_results)),
        "",
        "Speed-ups are the other job's seconds over featurebridge's, decided on command to result "
        "(the whole process: interpreter, imports, JVM, work, exit); work (input read to output written) "
        f"is shown beside it. RSS: {RSS_LIMIT_MB:,} MB (MiB) at every size, and flat means the 5M-row peak is at "
        f"most {RSS_FLAT_RATIO}x the 200k-row peak. 'not measured': the size or approach is not in this run, "
        "or it failed.",
        "",
        "Commands (from the repository root, `.venv/bin` on PATH):",
        "",
        f"- this run: `{info['command']}`",
        "- data: `python -m benchmarks.data --rows N` (main spec), `python -m benchmarks.data --rows N --text` "
        "(text spec); seeded, written to benchmarks/data/",
        "- one approach, one size: `python -m benchmarks.approaches NAME --parquet benchmarks/data/data-N.parquet "
        "--csv benchmarks/data/data-N.csv --spec benchmarks/data/spec.yaml --out OUT --result R.json` "
        "(text: `text-N.*`, `spec-text.yaml`)",
    ]
    cold = info.get("cold_start")
    if cold and "featurebridge" in cold:
        parts.append(f"- cold start: `{cold['featurebridge']['command']}` and "
                     f"`{cold['tft'].get('command', 'python -m benchmarks.approaches tft_csv ...')}`")
    return "\n".join(parts)


def write_block(name: str, body: str, path: str = RESULTS_MD) -> None:
    """Replaces the text between block `name`'s markers in `path` with `body`
    (appends a section with the markers when they are missing)."""
    begin, end = BLOCKS[name]
    block = f"{begin}\n{body}\n{end}"
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
    if begin in text and end in text and text.index(begin) < text.index(end):
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n## {name.capitalize()} (generated)\n\n{block}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
