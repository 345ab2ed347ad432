"""`featurebridge demo` (what `make demo` runs): sample data, then the whole job.

    featurebridge demo [--output demo_output] [--overwrite] [--rows N]

Writes seeded sample sessions (numbers with missing values, categoricals of
10 to 100,000 values with a skewed distribution, free text, an id key and a
binary label that depends on them) and their feature spec under
OUTPUT/data/, then runs `featurebridge run` on the DirectRunner with the last
file held out. Everything it writes is under OUTPUT/.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from typing import Dict, Optional, Sequence

from featurebridge.pipelines.options import RunArgs, RunnerConfigError, check_options
from featurebridge.transforms.outputs import OutputExistsError

__all__ = ["OPTIONS", "main", "run", "summarize"]

_LOG = logging.getLogger(__name__)


class DemoArgs:
    """Options of `featurebridge demo`."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--output", default="demo_output", help="Where everything goes (default demo_output).")
        parser.add_argument("--overwrite", action="store_true", default=False, help="Replace an earlier demo output.")
        parser.add_argument("--rows", type=int, default=20_000, help="Rows of sample data (default 20000).")
        parser.add_argument("--files", type=int, default=4, help="CSV files; the last is held out (default 4).")
        parser.add_argument("--epochs", type=int, default=5, help="Training epochs (default 5).")
        parser.add_argument("--model", default="wide_and_deep", choices=["linear", "dnn", "wide_and_deep"])
        parser.add_argument("--seed", type=int, default=7, help="Data seed (default 7).")
        parser.add_argument(
            "--dirty_rows",
            type=int,
            default=12,
            help="Sample rows broken on purpose, to show rejected/ at work (default 12).",
        )


OPTIONS = DemoArgs


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise RunnerConfigError(f"{message}. See `featurebridge demo --help`.")

    # Flags the demo does not define go on to `featurebridge run`: its own or Beam's.
    check_options("demo", argv, own=[DemoArgs, RunArgs])
    parser = Parser(prog="featurebridge demo", add_help=False, allow_abbrev=False)
    DemoArgs._add_argparse_args(parser)
    args, beam_flags = parser.parse_known_args(list(argv))
    if args.files < 2 or args.rows < args.files * 50:
        raise RunnerConfigError(
            f"The demo needs --files >= 2 and at least 50 rows per file; got --rows {args.rows}, --files {args.files}."
        )
    return args, beam_flags


def _looks_like_demo_output(path: str) -> bool:
    entries = set(os.listdir(path))
    return not entries or "data" in entries and entries <= {"data", "analyzed", "model", "predictions", "summary.json"} | {
        e for e in entries if e.startswith(".")
    }


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Generates the data and runs the job; returns the run summary.

    Raises:
      OutputExistsError: OUTPUT exists without --overwrite, or with
        --overwrite but holding files the demo did not write (we never delete those).
    """
    from featurebridge.pipelines import run_job
    from featurebridge.pipelines.sample_data import write_sample_data

    args, beam_flags = _parse(list(argv if argv is not None else sys.argv[1:]))
    out = os.path.abspath(args.output)
    if os.path.exists(out):
        if not args.overwrite:
            raise OutputExistsError(f"{args.output!r} exists. Pass --overwrite to replace the earlier demo output.")
        if not _looks_like_demo_output(out):
            raise OutputExistsError(
                f"{args.output!r} holds files the demo did not write; refusing to delete it. "
                "Choose another --output."
            )
        shutil.rmtree(out)
    data_dir = os.path.join(out, "data")
    written = write_sample_data(
        data_dir, args.rows, num_files=args.files, seed=args.seed, dirty_rows=args.dirty_rows
    )
    _LOG.info("Wrote %d sample rows in %d CSV files and spec.yaml to %s", args.rows, args.files, data_dir)
    summary = run_job.run(
        [
            "--input", os.path.join(data_dir, "sessions-*.csv"),
            "--spec", written["spec"],
            "--output", out,
            "--model", args.model,
            "--epochs", str(args.epochs),
            "--runner", "DirectRunner",
            *beam_flags,
        ]
    )
    summary["data"] = {
        "dir": data_dir,
        "rows": args.rows,
        "spec": written["spec"],
        "dirty_rows_per_file": written["dirty_rows_per_file"],
    }
    return summary


def summarize(result: Dict[str, object], output: str = "") -> str:
    from featurebridge.pipelines.run_job import summarize as run_summary

    return (
        f"Sample data: {result['data']['rows']} rows and spec.yaml in {result['data']['dir']}\n"
        + run_summary(result, output)
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    from featurebridge.pipelines.cli import run_command

    return run_command("demo", argv)


if __name__ == "__main__":
    sys.exit(main())
