"""`featurebridge run`: the whole job, analyze -> train -> export -> predict.

`run(argv)` is the command (usage: featurebridge.pipelines.commands);
`run_job` is the same job with typed arguments. It calls each stage's typed
entry point (`run_analyze`, `run_train`, `run_predict`) and writes
OUT/summary.json. The held-out rows are never analyzed or trained on.
Predict writes each held-out row's label beside its prediction
(`transforms.predict.LABEL_FIELD`) when the files have the label column; the
hold-out metrics are computed from those, without reading the rows again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from featurebridge.pipelines.flags import check_options
from featurebridge.pipelines.options import MODEL_TYPES, RunArgs
from featurebridge.pipelines.runner_config import expand_runner_config
from featurebridge.transforms import layout, provenance
from featurebridge.transforms.errors import OutputExistsError, UsageError
from featurebridge.transforms.spec_limits import parse_limit_overrides, set_active_limits
from featurebridge.transforms.staging import OutputLock

__all__ = ["TRAINING_INPUT_WARNING", "run", "run_job", "split_inputs", "summarize"]

_LOG = logging.getLogger(__name__)

# Said in the log, the printed summary and summary.json when there is nothing to hold out.
TRAINING_INPUT_WARNING = (
    "Only one input file and no --holdout, so no rows were held out: the predictions and their "
    "metrics are on the training input, and are not a held-out measure. For a held-out measure, "
    "pass --holdout GLOB (files kept out of analyze and train) or split the input into several "
    "files (the last one is held out). The model's eval-split metrics are on rows kept out of "
    "training, but not out of analyze."
)


def split_inputs(input_pattern: str, holdout_pattern: Optional[str]):
    """(train files, holdout files, how the split was chosen).

    Raises:
      InputError: a pattern matches nothing, or nothing is left to train on.
    """
    from featurebridge.transforms.io import InputError, match_files

    files = match_files(input_pattern)
    if holdout_pattern:
        holdout = match_files(holdout_pattern)
        train = [f for f in files if f not in set(holdout)]
        if not train:
            raise InputError(
                f"--holdout {holdout_pattern!r} covers every --input file; leave some input to train on."
            )
        return train, holdout, "--holdout"
    if len(files) >= 2:
        return files[:-1], files[-1:], "the last input file"
    _LOG.warning("%s", TRAINING_INPUT_WARNING)
    return files, files, "none (one input file: predictions are on the training input)"


def _holdout_has_label(holdout: List[str], spec, input_format: Optional[str]) -> bool:
    """Whether predict can read the label of the held-out rows: the spec has
    one and every CSV or Parquet file has its column (JSON lines and TFRecord
    records name their own fields; a record without it has a missing label).
    A file whose header cannot be read says no here; predict then reports it."""
    from featurebridge.transforms import io as fb_io

    if spec.label is None:
        return False
    source = spec.column(spec.label.column).source
    try:
        headers = [fb_io.read_header(path, input_format, spec.input) for path in holdout]
    except fb_io.InputError:
        return False
    return all(header is None or source in header for header in headers)


def _holdout_metrics(predictions_dir: str, spec, model_dir: str):
    """Scores the predictions against the held-out rows' labels, which
    `run_predict(..., with_label=True)` wrote in them (`LABEL_FIELD`); rows
    with no valid label are left out. A multiclass string label is matched
    to its class id by the class names in MODEL/metrics.json (a value the
    model has no class for counts as a wrong prediction). None when no row
    has a label, or a multiclass string label has no class names to match."""
    import numpy as np

    from featurebridge.transforms.predict import LABEL_FIELD
    from featurebridge.transforms.metrics import evaluate_predictions
    from featurebridge.transforms.serving import Head

    label_type = spec.column(spec.label.column).type
    head = Head(**layout.load_serving_info(model_dir)["head"])
    try:
        with open(os.path.join(model_dir, layout.METRICS_JSON), encoding="utf-8") as f:
            class_names = list(json.load(f).get("class_names") or [])
    except (OSError, ValueError):
        class_names = []
    class_ids = {name: i for i, name in enumerate(class_names)}
    strings_to_ids = head.kind == "multiclass" and label_type == "string"
    y, outs = [], {}
    for path in sorted(glob.glob(os.path.join(predictions_dir, f"{layout.PREDICTIONS_PREFIX}-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                p = json.loads(line)
                value = p.get(LABEL_FIELD)
                if value is None:
                    continue
                if head.kind == "binary" and label_type == "string":
                    value = int(value == spec.label.positive)
                elif strings_to_ids:
                    value = class_ids.get(value, -1)
                y.append(value)
                for name in ("probability", "probabilities", "prediction"):
                    if name in p:
                        outs.setdefault(name, []).append(p[name])
    if not y or strings_to_ids and not class_ids:
        return None
    return evaluate_predictions(head, np.asarray(y), {k: np.asarray(v) for k, v in outs.items()}, class_names)


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Parses the command line (``featurebridge run ...``), then `run_job`.
    Flags run does not define are Beam pipeline options for analyze and predict.

    ``--spec_limit NAME=N`` flags (none: the defaults) become the process's
    spec limits (`set_active_limits`) before the spec is loaded.

    Raises:
      UnknownOptionError: a flag neither run nor Beam defines.
      UsageError, RunnerConfigError: missing or bad options, before any work.
      And what `run_job` raises.
    """
    argv = list(argv if argv is not None else sys.argv[1:])
    check_options("run", argv, own=[RunArgs])
    args, beam_flags = RunArgs.parse(expand_runner_config(argv))
    set_active_limits(parse_limit_overrides(args.spec_limit or []))  # before the spec is loaded
    return run_job(
        args.spec, args.input, args.output, beam_flags,
        holdout=args.holdout, input_format=args.input_format, model=args.model,
        epochs=args.epochs, train_batch_size=args.train_batch_size, overwrite=args.overwrite,
        baseline=args.baseline,
    )


def run_job(
    spec: str,
    files: str,
    output: str,
    pipeline_args: Sequence[str] = (),
    *,
    holdout: Optional[str] = None,
    input_format: Optional[str] = None,
    model: str = "wide_and_deep",
    epochs: int = 5,
    train_batch_size: int = 256,
    overwrite: bool = False,
    baseline: Optional[str] = None,
) -> Dict[str, object]:
    """Runs the four stages and returns the summary (also OUT/summary.json).

    Args:
      spec: the feature spec file.
      files: input file globs, comma separated.
      output: OUT: analyzed/, model/, predictions/ and summary.json go there.
      pipeline_args: Beam pipeline options as flags, for analyze and predict.
      holdout: globs of rows to predict on and keep out of training; None:
        the last input file when there are several, else none.
      input_format: csv, parquet, tfrecord or jsonl; None infers it per file.
      model, epochs, train_batch_size: what to train.
      overwrite: replace earlier stage outputs.
      baseline: an earlier analyze output; analyzed/report.html shows the
        drift against it (None: no drift section).

    Raises:
      SpecError, InputError, OutputExistsError, UsageError: before any stage
        starts; errors of the stages as they raise them.
      OutputLockedError: another `run` is writing ``output`` now.
    """
    from featurebridge.pipelines.analyze import run_analyze
    from featurebridge.pipelines.predict import run_predict
    from featurebridge.pipelines.train import run_train
    from featurebridge.transforms.spec import load_spec

    if model not in MODEL_TYPES:
        raise UsageError(f"model {model!r} is unknown; use one of {', '.join(MODEL_TYPES)}.")
    pipeline_args = list(pipeline_args)
    spec_path, spec = spec, load_spec(spec)
    train_files, holdout_files, how = split_inputs(files, holdout)
    out = os.path.abspath(output)
    # One `run` at a time per OUT (each stage also locks its own directory,
    # but two runs could otherwise take turns stage by stage).
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with OutputLock(out):
        stages = {
            name: os.path.join(out, name) for name in (layout.ANALYZED_DIR, layout.MODEL_DIR, layout.PREDICTIONS_DIR)
        }
        summary_path = os.path.join(out, layout.SUMMARY_JSON)
        if not overwrite:
            for path in list(stages.values()) + [summary_path]:
                if os.path.exists(path):
                    raise OutputExistsError(
                        f"{path} already exists. Choose a new --output or pass --overwrite to replace it."
                    )
        os.makedirs(out, exist_ok=True)
        analyzed_dir, model_dir, predictions_dir = (
            stages[layout.ANALYZED_DIR], stages[layout.MODEL_DIR], stages[layout.PREDICTIONS_DIR]
        )
        started = time.monotonic()
        timings = {}

        _LOG.info("[1/3] analyze: %d file(s); holding out %d file(s) (%s)", len(train_files), len(holdout_files), how)
        t = time.monotonic()
        analyzed = run_analyze(
            spec_path, train_files, analyzed_dir, pipeline_args, input_format=input_format, overwrite=overwrite,
            baseline=baseline,
        )
        timings["analyze"] = round(time.monotonic() - t, 2)

        _LOG.info("[2/3] train + export: %s model, %d epoch(s)", model, epochs)
        t = time.monotonic()
        trained = run_train(
            analyzed_dir, model_dir, model=model, epochs=epochs, batch_size=train_batch_size, overwrite=overwrite
        )
        timings["train_and_export"] = round(time.monotonic() - t, 2)

        on_training_input = not set(holdout_files).isdisjoint(train_files)
        if on_training_input:
            _LOG.warning("[3/3] predict on the TRAINING input (%d file(s); not held out) with RunInference", len(holdout_files))
        else:
            _LOG.info("[3/3] predict on %d held-out file(s) with RunInference", len(holdout_files))
        t = time.monotonic()
        with_label = _holdout_has_label(holdout_files, spec, input_format)
        predicted = run_predict(
            model_dir, holdout_files, predictions_dir, pipeline_args,
            input_format=input_format, overwrite=overwrite, with_label=with_label,
        )
        timings["predict"] = round(time.monotonic() - t, 2)

        holdout_metrics = _holdout_metrics(predictions_dir, spec, model_dir) if with_label else None
        if on_training_input:
            _LOG.warning("%s", TRAINING_INPUT_WARNING)
        summary = {
            "job": "run",
            "finished": provenance.utc_now(),
            "elapsed_seconds": round(time.monotonic() - started, 2),
            "stage_seconds": timings,
            "inputs": {"train": train_files, "holdout": holdout_files, "holdout_chosen_by": how},
            "predictions_on_training_input": on_training_input,
            "warnings": [TRAINING_INPUT_WARNING] if on_training_input else [],
            "rows": {
                "analyze": analyzed["rows"] if "rows" in analyzed else None,
                "train": trained["metrics"]["rows"]["train"],
                "eval": trained["metrics"]["rows"]["eval"],
                "predict": predicted["rows"],
            },
            "model_type": model,
            "metrics": {
                "eval_split": trained["metrics"]["model"],
                "baseline": trained["metrics"]["baseline"],
                # Predictions on the training input are no held-out measure: they go under their own name.
                "holdout": None if on_training_input else holdout_metrics,
                "training_input": holdout_metrics if on_training_input else None,
            },
            # Each stage by its manifest's sha256 (`featurebridge lineage` follows and checks them).
            "stages": {
                name: provenance.manifest_link(path)
                for name, path in (("analyze", analyzed_dir), ("train", model_dir), ("predict", predictions_dir))
            },
            "artifacts": {
                "analyzed": analyzed_dir,
                "model": model_dir,
                "serving_model": os.path.join(model_dir, layout.SERVING_DIR),
                "predictions": predictions_dir,
                "summary": summary_path,
            },
        }
        if summary["rows"]["analyze"]:
            summary["rows"]["analyze"] = {k: v for k, v in summary["rows"]["analyze"].items() if k != "per_file"}
        provenance.write_json_atomic(summary_path, summary)
        return summary


def summarize(result: Dict[str, object], output: str = "") -> str:
    """The CLI's one-screen summary of a run (stages, rows, metrics, artifacts)."""
    from featurebridge.pipelines.train import LOGS_DIR, metric_table, per_class_line

    rows, m, a = result["rows"], result["metrics"], result["artifacts"]
    ana = rows["analyze"] or {}
    pred = rows["predict"]
    on_training_input = result.get("predictions_on_training_input", False)
    predicted_on = "rows of the TRAINING input (not held out)" if on_training_input else "held-out rows"
    lines = [
        f"featurebridge run finished in {result['elapsed_seconds']} s "
        f"(analyze {result['stage_seconds']['analyze']} s, train+export "
        f"{result['stage_seconds']['train_and_export']} s, predict {result['stage_seconds']['predict']} s).",
        f"Rows: analyzed {ana.get('read')} read / {ana.get('used')} used / {ana.get('rejected')} rejected; "
        f"trained on {rows['train']}, evaluated on {rows['eval']}; "
        f"predicted {pred['predicted']} {predicted_on} ({pred['rejected']} rejected).",
        f"Metrics ({result['model_type']} model vs baseline: {m['baseline'].get('predicts', '')}):",
    ]
    if ana.get("rejected_by"):
        lines.insert(2, "Rejected by column and reason: " + ", ".join(f"{p} ({n})" for p, n in ana["rejected_by"].items()))
    lines += metric_table([
        ("eval split", m["eval_split"]),
        ("baseline", m["baseline"]),
        ("held-out rows", m.get("holdout")),
        ("training input (not held out)", m.get("training_input")),
    ])
    lines += per_class_line(m["eval_split"])
    lines += [f"WARNING: {w}" for w in result.get("warnings", [])]
    lines += [
        "Artifacts:",
        f"  analyzed       {a['analyzed']}",
        f"  serving model  {a['serving_model']}",
        f"  predictions    {a['predictions']}",
        f"  summary        {a['summary']}",
    ]
    report = os.path.join(a["analyzed"], layout.REPORT_HTML)
    if os.path.isfile(report):
        lines.insert(lines.index("Artifacts:") + 2, f"  data report    {report}")
    logs = os.path.join(a["model"], LOGS_DIR)
    if os.path.isdir(logs):
        lines.append(f"  curves         tensorboard --logdir {logs}")
    lines.append(f"  lineage        featurebridge lineage {output or os.path.dirname(a['summary'])} --verify")
    return "\n".join(lines)
