"""`featurebridge demo` (what `make demo` runs): sample data, then the whole job.

`run(argv)` is the command (usage: featurebridge.pipelines.commands): it
writes seeded sample data and its spec under OUTPUT/data/, then runs
`featurebridge run` on the DirectRunner with the last file held out.
Everything it writes is under OUTPUT/.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Dict, Optional, Sequence

from featurebridge.pipelines.options import DemoArgs
from featurebridge.transforms import layout
from featurebridge.transforms.errors import OutputExistsError

__all__ = [ "run", "summarize"]

_LOG = logging.getLogger(__name__)
_DATA_DIR = "data"


def _looks_like_demo_output(path: str) -> bool:
    entries = set(os.listdir(path))
    ours = {_DATA_DIR, layout.ANALYZED_DIR, layout.MODEL_DIR, layout.PREDICTIONS_DIR, layout.SUMMARY_JSON}
    return not entries or _DATA_DIR in entries and entries <= ours | {e for e in entries if e.startswith(".")}


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Generates the data and runs the job; returns the run summary.

    Raises:
      OutputExistsError: OUTPUT exists without --overwrite, or with
        --overwrite but holding files the demo did not write (we never delete those).
    """
    from featurebridge.pipelines import run_job
    from featurebridge.pipelines.sample_data import write_sample_data

    args, run_flags = DemoArgs.parse(list(argv if argv is not None else sys.argv[1:]))
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
    data_dir = os.path.join(out, _DATA_DIR)
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
            *run_flags,
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
    """The CLI's one-screen summary: the sample data, then the run's."""
    from featurebridge.pipelines.run_job import summarize as run_summary

    return (
        f"Sample data: {result['data']['rows']} rows and spec.yaml in {result['data']['dir']}\n"
        + run_summary(result, output)
    )

