"""`featurebridge predict`: raw files + trained model -> predictions, on Beam.

`run(argv)` is the command (usage: featurebridge.pipelines.commands);
`run_predict` is the same job with typed arguments. The pipeline reads rows
with the analyze readers, predicts with RunInference, writes
PRED/predictions-*.jsonl (a classifier's rows carry ``class_name`` beside
``class_id``) and PRED/rejected/, and, once every prediction is
written, checks that predictions == rows used and writes the row counts as
PRED/rows.json (`layout.PREDICT_ROWS_JSON`), which the manifest repeats.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, Optional, Sequence, Union

import apache_beam as beam

from featurebridge.pipelines.engines import engine_info, engine_session
from featurebridge.pipelines.flags import check_options
from featurebridge.pipelines.options import PredictOptions, refuse
from featurebridge.pipelines.runner_config import expand_runner_config
from featurebridge.transforms import io as fb_io
from featurebridge.transforms import layout, provenance
from featurebridge.transforms.errors import CountMismatchError, UsageError
from featurebridge.transforms.staging import StagedOutput

__all__ = ["PREDICTIONS_PREFIX", "UsageError", "run", "run_predict", "summarize"]

_LOG = logging.getLogger(__name__)
PREDICTIONS_PREFIX = layout.PREDICTIONS_PREFIX


class _CheckCounts(beam.DoFn):
    """Runs once, after the reads and the predictions: the row counts of the
    whole run ({read, used, rejected, predicted}) as one JSON line.

    Raises:
      CountMismatchError: predictions written != rows used.
    """

    def process(self, _, stats, predicted):
        rows = {"read": 0, "used": 0, "rejected": 0}
        for per_file in stats:
            for key in rows:
                rows[key] += per_file[key]
        rows["predicted"] = predicted
        if predicted != rows["used"]:
            raise CountMismatchError(
                f"{rows['used']} rows were read but {predicted} predictions were written. "
                "This is a bug in featurebridge; please report it."
            )
        yield json.dumps(rows, sort_keys=True)


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Parses the command line (``featurebridge predict ...``), then `run_predict`.

    Raises:
      UnknownOptionError: a flag neither predict nor Beam defines.
      UsageError, RunnerConfigError: missing or bad options, before any work.
      And what `run_predict` raises.
    """
    argv = list(argv if argv is not None else sys.argv[1:])
    check_options("predict", argv, own=[PredictOptions])
    argv = expand_runner_config(argv)
    opts = PredictOptions(argv)
    refuse("predict", opts.validate_predict())
    return run_predict(
        opts.model_dir, opts.input, opts.output, argv,
        input_format=opts.input_format, overwrite=opts.overwrite,
        batch_size=opts.batch_size, max_inference_batch=opts.max_inference_batch,
    )


def run_predict(
    model: str,
    files: Union[str, Sequence[str]],
    output: str,
    pipeline_args: Sequence[str] = (),
    *,
    input_format: Optional[str] = None,
    overwrite: bool = False,
    batch_size: int = 10_000,
    max_inference_batch: int = 1024,
    with_label: bool = False,
) -> Dict[str, object]:
    """Runs batch prediction; returns the manifest (row counts, outputs).

    Args:
      model: the model directory (`featurebridge train --output`), its serving/
        (the highest version is used) or a version directory serving/<version>.
      files: input file globs (a list, or comma separated). The label column
        may be there or not; it is not used unless `with_label`.
      output: the directory to write (atomically).
      pipeline_args: Beam pipeline options as flags (runner config expanded).
      input_format: csv, parquet, tfrecord or jsonl; None infers it per file.
      overwrite: replace an existing ``output``.
      batch_size: rows per Arrow RecordBatch read.
      max_inference_batch: most rows per model call.
      with_label: read the label column too and write each row's raw label
        in its prediction (`transforms.predict.LABEL_FIELD`; None where it is
        missing or invalid). Rows are used and rejected as without it. The
        CLI never sets it.

    Returns:
      The manifest; ``rows`` is {read, used, rejected, predicted} (as in
      PRED/rows.json). Inputs with no usable rows give no predictions, not an error.

    Raises:
      ModelDirError, InputError, OutputExistsError, OutputLockedError (another
        run is writing ``output`` now), UsageError: before the
        pipeline starts, saying what to fix (with `with_label`: also a CSV or
        Parquet file without the label column, or a model without a label).
      CountMismatchError: from the pipeline; no output directory is left.
    """
    pipeline_args = list(pipeline_args)
    from featurebridge.pipelines.tf_logging import quiet_tensorflow

    quiet_tensorflow()
    from featurebridge.transforms.predict import Predict  # TensorFlow: after the flags are checked

    predict = Predict(model, max_batch_size=max_inference_batch, with_label=with_label)
    patterns = files if isinstance(files, str) else ",".join(files)
    reader = fb_io.ReadRawData(patterns, predict.spec, input_format, batch_size, include_position=True)
    staged = StagedOutput(output, overwrite=overwrite)  # the lock: held until commit() or abort()
    started = time.monotonic()
    rows_stem = os.path.splitext(layout.PREDICT_ROWS_JSON)
    try:
        all_options = beam.options.pipeline_options.PipelineOptions(pipeline_args).get_all_options()
        runner = all_options.get("runner") or "DirectRunner"
        manifest: Dict[str, object] = {
            "job": "predict",
            "started": provenance.utc_now(),
            "model": os.path.abspath(model),
            "model_link": provenance.model_link(model),  # the model's manifest sha256, the serving export used
            "inputs": [provenance.file_digest(p) for p in reader.files],
            "runner": runner,
            "engine": engine_info(all_options),
        }
        _LOG.info("Predicting on %d file(s) with %s; staging in %s", len(reader.files), runner, staged.path)
        with engine_session(pipeline_args) as job_argv, beam.Pipeline(options=PredictOptions(job_argv)) as pipeline:
            read = pipeline | "Read" >> reader
            predictions = read.batches | "Predict" >> predict
            _ = (
                predictions
                | "ToJson" >> beam.Map(lambda row: json.dumps(row, sort_keys=False))
                | "WritePredictions"
                >> beam.io.WriteToText(os.path.join(staged.path, PREDICTIONS_PREFIX), file_name_suffix=".jsonl")
            )
            _ = read.rejected | "WriteRejected" >> beam.io.WriteToText(
                os.path.join(staged.path, layout.REJECTED_DIR, layout.REJECTED_PREFIX),
                file_name_suffix=".jsonl", num_shards=1,
            )
            predicted = predictions | "CountPredictions" >> beam.combiners.Count.Globally()
            _ = (
                pipeline
                | "CheckTrigger" >> beam.Create([None])
                | "CheckCounts" >> beam.ParDo(
                    _CheckCounts(), stats=beam.pvalue.AsList(read.stats), predicted=beam.pvalue.AsSingleton(predicted)
                )
                | "WriteRows" >> beam.io.WriteToText(
                    os.path.join(staged.path, rows_stem[0]), file_name_suffix=rows_stem[1],
                    num_shards=1, shard_name_template="",
                )
            )
        with open(os.path.join(staged.path, layout.PREDICT_ROWS_JSON), encoding="utf-8") as f:
            manifest["rows"] = json.load(f)
        provenance.seal_manifest(staged.path, manifest)
        staged.commit()
    except BaseException:
        staged.abort()
        raise
    manifest["elapsed_seconds"] = round(time.monotonic() - started, 2)
    return manifest


def summarize(result: Dict[str, object], output: str) -> str:
    """The CLI's one-screen summary of a predict manifest."""
    rows = result["rows"]
    lines = [
        f"Predicted {rows['predicted']} rows in {result.get('elapsed_seconds', '?')} s "
        f"({rows['read']} read, {rows['rejected']} rejected).",
        f"Predictions in {os.path.abspath(output)}/{PREDICTIONS_PREFIX}-*.jsonl",
    ]
    if rows["rejected"]:
        lines.append(f"  rejected rows with reasons: {os.path.join(os.path.abspath(output), layout.REJECTED_DIR)}/")
    return "\n".join(lines)

