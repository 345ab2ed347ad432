"""`featurebridge predict`: raw files + trained model -> predictions, on Beam.

    featurebridge predict --model MODEL --input 'new/*.csv' --output PRED

Rows are read with the same readers as analyze (rows that cannot be used go
to PRED/rejected/ with their reason), predicted with RunInference over the
serving SavedModel (loaded once per worker), and written as JSON lines to
PRED/predictions-*.jsonl with the row's key column (when the spec has one),
``__source__`` and ``__row__``, so each prediction joins back to its input.
Any Beam pipeline option may follow, or come from --runner_config.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, Optional, Sequence

import apache_beam as beam

from featurebridge.pipelines.engines import engine_info, engine_session
from featurebridge.pipelines.options import PredictOptions, check_options, expand_runner_config
from featurebridge.transforms import io as fb_io
from featurebridge.transforms import provenance
from featurebridge.transforms.outputs import StagedOutput

__all__ = ["OPTIONS", "UsageError", "main", "run", "summarize"]

_LOG = logging.getLogger(__name__)
OPTIONS = PredictOptions
PREDICTIONS_PREFIX = "predictions"


class UsageError(ValueError):
    """Options are missing or inconsistent."""


def _sum_stats(stats):
    total = {"read": 0, "used": 0, "rejected": 0}
    for s in stats:
        for k in total:
            total[k] += s[k]
    return total


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Runs batch prediction; returns the manifest (row counts, outputs).

    Raises:
      UnknownOptionError: a flag neither predict nor Beam defines.
      UsageError, ModelDirError, InputError, OutputExistsError: before the
        pipeline starts, saying what to fix.
    """
    argv = list(argv if argv is not None else sys.argv[1:])
    check_options("predict", argv, own=[PredictOptions])
    from featurebridge.transforms.predict import Predict  # TensorFlow: after the flags are checked

    argv = expand_runner_config(argv)
    options = PredictOptions(argv)
    opts = options.view_as(PredictOptions)
    problems = opts.validate_predict()
    if problems:
        raise UsageError("; ".join(problems) + ". See `featurebridge predict --help`.")
    predict = Predict(opts.model_dir, max_batch_size=opts.max_inference_batch)
    reader = fb_io.ReadRawData(opts.input, predict.spec, opts.input_format, opts.batch_size, include_position=True)
    staged = StagedOutput(opts.output, overwrite=opts.overwrite)
    runner = options.get_all_options().get("runner") or "DirectRunner"
    manifest: Dict[str, object] = {
        "job": "predict",
        "started": provenance.utc_now(),
        "model": os.path.abspath(opts.model_dir),
        "inputs": [provenance.file_digest(p) for p in reader.files],
        "runner": runner,
        "engine": engine_info(options.get_all_options()),
    }
    _LOG.info("Predicting on %d file(s) with %s; staging in %s", len(reader.files), runner, staged.path)
    started = time.monotonic()
    try:
        with engine_session(argv) as job_argv, beam.Pipeline(options=PredictOptions(job_argv)) as pipeline:
            read = pipeline | "Read" >> reader
            predictions = read.batches | "Predict" >> predict
            _ = (
                predictions
                | "ToJson" >> beam.Map(lambda row: json.dumps(row, sort_keys=False))
                | "WritePredictions"
                >> beam.io.WriteToText(os.path.join(staged.path, PREDICTIONS_PREFIX), file_name_suffix=".jsonl")
            )
            _ = read.rejected | "WriteRejected" >> beam.io.WriteToText(
                os.path.join(staged.path, "rejected", "rejected"), file_name_suffix=".jsonl", num_shards=1
            )
            _ = (
                read.stats
                | "CollectStats" >> beam.combiners.ToList()
                | "WriteStats" >> beam.Map(lambda s: _write_json(os.path.join(staged.path, "_stats.json"), _sum_stats(s)))
            )
            _ = (
                predictions
                | "CountPredictions" >> beam.combiners.Count.Globally()
                | "WriteCount" >> beam.Map(lambda n: _write_json(os.path.join(staged.path, "_count.json"), {"predicted": n}))
            )
        rows = _read_json(os.path.join(staged.path, "_stats.json"))
        rows.update(_read_json(os.path.join(staged.path, "_count.json")))
        for name in ("_stats.json", "_count.json"):
            os.remove(os.path.join(staged.path, name))
        if rows["predicted"] != rows["used"]:
            raise RuntimeError(
                f"{rows['used']} rows were read but {rows['predicted']} predictions were written. "
                "This is a bug in featurebridge; please report it."
            )
        manifest["rows"] = rows
        provenance.seal_manifest(staged.path, manifest)
        staged.commit()
    except BaseException:
        staged.abort()
        raise
    manifest["elapsed_seconds"] = round(time.monotonic() - started, 2)
    return manifest


def _write_json(path: str, payload) -> None:
    provenance.write_json_atomic(path, payload)


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summarize(result: Dict[str, object], output: str) -> str:
    rows = result["rows"]
    lines = [
        f"Predicted {rows['predicted']} rows in {result.get('elapsed_seconds', '?')} s "
        f"({rows['read']} read, {rows['rejected']} rejected).",
        f"Predictions in {os.path.abspath(output)}/{PREDICTIONS_PREFIX}-*.jsonl",
    ]
    if rows["rejected"]:
        lines.append(f"  rejected rows with reasons: {os.path.join(os.path.abspath(output), 'rejected')}/")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from featurebridge.pipelines.cli import run_command

    return run_command("predict", argv)


if __name__ == "__main__":
    sys.exit(main())
