"""`featurebridge run`: the whole job, analyze -> train -> export -> predict.

    featurebridge run --input 'data/*.csv' --spec spec.yaml --output OUT [--holdout GLOB]

Writes OUT/analyzed/ (the analyze output), OUT/model/ (serving SavedModel,
metrics), OUT/predictions/ (predictions on the held-out rows) and
OUT/summary.json. The held-out rows are --holdout, else the last input file
when there are several; they are never analyzed or trained on. Flags the job
does not know are Beam pipeline options for the analyze and predict stages
(``--runner``, ``--direct_num_workers``, ``--runner_config FILE``...).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from featurebridge.pipelines.options import RunArgs, check_options, expand_runner_config
from featurebridge.transforms import provenance
from featurebridge.transforms.outputs import OutputExistsError

__all__ = ["OPTIONS", "main", "run", "split_inputs", "summarize"]

_LOG = logging.getLogger(__name__)
OPTIONS = RunArgs


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
    _LOG.warning(
        "Only one input file, so no rows are held out: predictions are on the training input. "
        "Pass --holdout or split the input into several files."
    )
    return files, files, "none (one input file: predictions are on the training input)"


def _holdout_metrics(holdout: List[str], predictions_dir: str, spec, input_format, model_dir: str):
    """Scores the predictions against the held-out rows' labels (when present)."""
    import numpy as np

    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.predict import load_serving_info
    from featurebridge.transforms.train import Head, evaluate_predictions

    if spec.label is None:
        return None
    labels = {}
    label_type = spec.column(spec.label.column).type
    try:
        for path in holdout:
            for kind, value in fb_io.read_file(path, spec, input_format, include_position=True):
                if kind != "batch":
                    continue
                ys = value.column(spec.label.column).to_pylist()
                for src, row, y in zip(value.column(fb_io.SOURCE_COLUMN).to_pylist(), value.column(fb_io.ROW_COLUMN).to_pylist(), ys):
                    labels[(src[0].decode() if isinstance(src[0], bytes) else src[0], row[0])] = y[0]
    except fb_io.InputError:  # the held-out rows have no label column
        return None
    head = Head(**load_serving_info(model_dir)["head"])
    y, outs = [], {}
    for path in sorted(glob.glob(os.path.join(predictions_dir, "predictions-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                p = json.loads(line)
                key = (p["__source__"], p["__row__"])
                if key not in labels:
                    continue
                value = labels[key]
                if head.kind == "binary" and label_type == "string":
                    value = int(value == spec.label.positive.encode())
                y.append(value)
                for name in ("probability", "probabilities", "prediction"):
                    if name in p:
                        outs.setdefault(name, []).append(p[name])
    if not y or head.kind == "multiclass" and label_type == "string":
        return None  # string classes would need the label vocabulary; eval split metrics cover it
    return evaluate_predictions(head, np.asarray(y), {k: np.asarray(v) for k, v in outs.items()})


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Runs the four stages and returns the summary (also OUT/summary.json).

    Raises:
      UnknownOptionError: a flag neither run nor Beam defines.
      RunnerConfigError, SpecError, InputError, OutputExistsError: before any
        stage starts; errors of the stages as they raise them.
    """
    argv = list(argv if argv is not None else sys.argv[1:])
    check_options("run", argv, own=[RunArgs])
    from featurebridge.pipelines import analyze, predict, train
    from featurebridge.transforms.spec import load_spec

    args, beam_flags = RunArgs.parse(expand_runner_config(argv))
    spec = load_spec(args.spec)
    train_files, holdout, how = split_inputs(args.input, args.holdout)
    out = os.path.abspath(args.output)
    stages = {name: os.path.join(out, name) for name in ("analyzed", "model", "predictions")}
    if not args.overwrite:
        for path in list(stages.values()) + [os.path.join(out, "summary.json")]:
            if os.path.exists(path):
                raise OutputExistsError(
                    f"{path} already exists. Choose a new --output or pass --overwrite to replace it."
                )
    os.makedirs(out, exist_ok=True)
    overwrite = ["--overwrite"] if args.overwrite else []
    fmt = ["--format", args.input_format] if args.input_format else []
    started = time.monotonic()
    timings = {}

    _LOG.info("[1/3] analyze: %d file(s); holding out %d file(s) (%s)", len(train_files), len(holdout), how)
    t = time.monotonic()
    analyzed = analyze.run(
        ["--input", ",".join(train_files), "--spec", args.spec, "--output", stages["analyzed"], *fmt, *overwrite, *beam_flags]
    )
    timings["analyze"] = round(time.monotonic() - t, 2)

    _LOG.info("[2/3] train + export: %s model, %d epoch(s)", args.model, args.epochs)
    t = time.monotonic()
    trained = train.run(
        [
            "--analyzed", stages["analyzed"], "--output", stages["model"], "--model", args.model,
            "--epochs", str(args.epochs), "--batch_size", str(args.train_batch_size), *overwrite,
        ]
    )
    timings["train_and_export"] = round(time.monotonic() - t, 2)

    _LOG.info("[3/3] predict on %d held-out file(s) with RunInference", len(holdout))
    t = time.monotonic()
    predicted = predict.run(
        ["--model", stages["model"], "--input", ",".join(holdout), "--output", stages["predictions"], *fmt, *overwrite, *beam_flags]
    )
    timings["predict"] = round(time.monotonic() - t, 2)

    holdout_metrics = _holdout_metrics(holdout, stages["predictions"], spec, args.input_format, stages["model"])
    summary = {
        "job": "run",
        "finished": provenance.utc_now(),
        "elapsed_seconds": round(time.monotonic() - started, 2),
        "stage_seconds": timings,
        "inputs": {"train": train_files, "holdout": holdout, "holdout_chosen_by": how},
        "rows": {
            "analyze": analyzed["rows"] if "rows" in analyzed else None,
            "train": trained["metrics"]["rows"]["train"],
            "eval": trained["metrics"]["rows"]["eval"],
            "predict": predicted["rows"],
        },
        "model_type": args.model,
        "metrics": {
            "eval_split": trained["metrics"]["model"],
            "baseline": trained["metrics"]["baseline"],
            "holdout": holdout_metrics,
        },
        "artifacts": {
            "analyzed": stages["analyzed"],
            "model": stages["model"],
            "serving_model": os.path.join(stages["model"], "serving"),
            "predictions": stages["predictions"],
            "summary": os.path.join(out, "summary.json"),
        },
    }
    if summary["rows"]["analyze"]:
        summary["rows"]["analyze"] = {k: v for k, v in summary["rows"]["analyze"].items() if k != "per_file"}
    provenance.write_json_atomic(os.path.join(out, "summary.json"), summary)
    return summary


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def summarize(result: Dict[str, object], output: str = "") -> str:
    rows, m, a = result["rows"], result["metrics"], result["artifacts"]
    ana = rows["analyze"] or {}
    pred = rows["predict"]
    lines = [
        f"featurebridge run finished in {result['elapsed_seconds']} s "
        f"(analyze {result['stage_seconds']['analyze']} s, train+export "
        f"{result['stage_seconds']['train_and_export']} s, predict {result['stage_seconds']['predict']} s).",
        f"Rows: analyzed {ana.get('read')} read / {ana.get('used')} used / {ana.get('rejected')} rejected; "
        f"trained on {rows['train']}, evaluated on {rows['eval']}; "
        f"predicted {pred['predicted']} held-out rows ({pred['rejected']} rejected).",
        f"Metrics ({result['model_type']} model vs baseline: {m['baseline'].get('predicts', '')}):",
    ]
    if ana.get("rejected_by"):
        lines.insert(2, "Rejected by column and reason: " + ", ".join(f"{p} ({n})" for p, n in ana["rejected_by"].items()))
    names = [k for k in ("auc", "accuracy", "loss", "rmse", "mae") if k in m["eval_split"]]
    for k in names:
        line = f"  {k:9s} eval split {_fmt(m['eval_split'][k])}   baseline {_fmt(m['baseline'].get(k))}"
        if m.get("holdout"):
            line += f"   held-out rows {_fmt(m['holdout'].get(k))}"
        lines.append(line)
    lines += [
        "Artifacts:",
        f"  analyzed       {a['analyzed']}",
        f"  serving model  {a['serving_model']}",
        f"  predictions    {a['predictions']}",
        f"  summary        {a['summary']}",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from featurebridge.pipelines.cli import run_command

    return run_command("run", argv)


if __name__ == "__main__":
    sys.exit(main())
