"""`featurebridge train`: analyzed data -> trained model + raw-feature serving SavedModel.

`run(argv)` is the command (usage: featurebridge.pipelines.commands);
`run_train` is the same job with typed arguments. Writes MODEL/serving/,
MODEL/metrics.json, MODEL/logs/ (TensorBoard) and MODEL/manifest.json
(names: featurebridge.transforms.layout; metrics: docs/model_metrics.md).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from featurebridge.pipelines.options import TrainArgs
from featurebridge.transforms import layout, provenance
from featurebridge.transforms.metrics import compact_metrics
from featurebridge.transforms.staging import StagedOutput

__all__ = [
    "LOGS_DIR",
    "SUMMARY_METRICS",
    "metric_lines",
    "metric_table",
    "per_class_line",
    "run",
    "run_train",
    "summarize",
    "warmup_examples",
]

_LOG = logging.getLogger(__name__)

# MODEL/logs: Keras' TensorBoard callback's train/ and validation/ runs (`tensorboard --logdir MODEL/logs`).
LOGS_DIR = "logs"


def warmup_examples(analyzed_manifest: dict, spec, rows: int = 5) -> List[bytes]:
    """A few raw rows from the analyze run's first input, as serialized
    tf.Examples for TF Serving warm-up; empty when the input is gone."""
    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.examples import batch_to_examples

    for entry in analyzed_manifest.get("inputs", [])[:1]:
        path = entry.get("path")
        if not path or not os.path.exists(path):
            continue
        try:
            for kind, value in fb_io.read_file(path, spec, analyzed_manifest.get("input_format"), batch_size=rows):
                if kind == "batch":
                    return batch_to_examples(spec, value)[:rows]
        except (fb_io.InputError, OSError) as e:
            _LOG.warning("No warm-up rows from %s (%s); using an empty example.", path, e)
    return []


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Parses the command line (``featurebridge train ...``), then `run_train`.

    Raises:
      UnknownOptionError, RunnerConfigError: unknown, bad or missing options.
      And what `run_train` raises.
    """
    args = TrainArgs.parse(list(argv if argv is not None else sys.argv[1:]))
    return run_train(
        args.analyzed, args.output, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, eval_percent=args.eval_percent, seed=args.seed,
        overwrite=args.overwrite,
    )


def run_train(
    analyzed: str,
    output: str,
    *,
    model: str = "wide_and_deep",
    epochs: int = 5,
    batch_size: int = 256,
    learning_rate: float = 0.005,
    eval_percent: int = 20,
    seed: int = 0,
    overwrite: bool = False,
) -> Dict[str, object]:
    """Trains, exports and writes the model directory atomically; returns its manifest.

    Args:
      analyzed: an analyze output directory.
      output: the model directory to write.
      model: linear, dnn or wide_and_deep.
      epochs, batch_size, learning_rate, seed: training settings.
      eval_percent: percent of rows held out for the eval split metrics.
      overwrite: replace an existing ``output``.

    Raises:
      ArtifactError: ``analyzed`` is not an analyze output.
      OutputExistsError: ``output`` exists and ``overwrite`` is False.
      OutputLockedError: another run is writing ``output`` now.
      TrainingError: the analyzed data cannot be trained on (no rows, a
        constant label, bad settings).
    """
    opened = layout.load_analyzed(analyzed)  # fails early on a wrong directory, without TF
    spec = opened.spec
    staged = StagedOutput(output, overwrite=overwrite)  # the lock: held until commit() or abort()
    settings = dict(
        model=model, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        eval_percent=eval_percent, seed=seed,
    )
    started = time.monotonic()
    manifest: Dict[str, object] = {"job": "train", "started": provenance.utc_now()}
    try:
        from featurebridge.pipelines.tf_logging import quiet_tensorflow

        quiet_tensorflow()
        from featurebridge.transforms.export import export_serving_model  # TensorFlow: after the checks
        from featurebridge.transforms.train import train_model

        result = train_model(
            analyzed,
            model_type=model,
            epochs=epochs,
            batch_size=batch_size,
            eval_percent=eval_percent,
            learning_rate=learning_rate,
            seed=seed,
            log_dir=os.path.join(staged.path, LOGS_DIR),
        )
        analyzed_manifest = dict(opened.manifest)
        export = export_serving_model(
            result.model,
            result.head,
            result.features,
            analyzed,
            spec,
            os.path.join(staged.path, layout.SERVING_DIR),
            warmup_examples(analyzed_manifest, spec),
        )
        metrics = dict(result.metrics)
        metrics.update(
            model_type=model, head=result.head.to_dict(), training_loss_per_epoch=result.history,
            seconds_per_epoch=result.epoch_seconds, class_names=result.class_names,
            tensorboard_logs=LOGS_DIR if os.path.isdir(os.path.join(staged.path, LOGS_DIR)) else None,
        )
        provenance.write_json_atomic(os.path.join(staged.path, layout.METRICS_JSON), metrics)
        manifest.update(
            analyzed={
                "path": os.path.abspath(analyzed),
                "manifest_sha256": provenance.file_digest(os.path.join(analyzed, layout.MANIFEST))["sha256"],
                "spec_digest": analyzed_manifest.get("spec_digest"),
                "analyzer": analyzed_manifest.get("analyzer"),
                "rows": analyzed_manifest.get("rows", {}).get("used"),
            },
            spec=spec.to_dict(),
            spec_digest=spec.digest(),
            options=settings,
            features=[f.__dict__ for f in result.features],
            signatures=export["signatures"],
            metrics={  # the headline numbers; metrics.json has the tables and the epochs
                "model": compact_metrics(metrics["model"]),
                "baseline": compact_metrics(metrics["baseline"]),
                "rows": metrics["rows"],
                "label_warnings": metrics.get("label_warnings", []),
            },
        )
        provenance.seal_manifest(staged.path, manifest)
        staged.commit()
    except BaseException:
        staged.abort()
        raise
    manifest["elapsed_seconds"] = round(time.monotonic() - started, 2)
    return manifest


# The scalar metrics a summary shows, in this order, when present.
SUMMARY_METRICS = ("auc", "pr_auc", "accuracy", "macro_f1", "ece", "brier", "loss", "rmse", "mae", "r2")
# A summary names at most this many classes' F1.
_SUMMARY_CLASSES = 8


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def metric_table(columns: Sequence[Tuple[str, Optional[Mapping[str, object]]]]) -> List[str]:
    """'  name      title value   title value' lines, one per metric of
    SUMMARY_METRICS that the first column has; a None column is skipped."""
    columns = [(title, scores) for title, scores in columns if scores is not None]
    if not columns:
        return []
    first = columns[0][1]
    return [
        f"  {k:9s} " + "   ".join(f"{title} {_fmt(scores.get(k))}" for title, scores in columns)
        for k in SUMMARY_METRICS
        if k in first
    ]


def per_class_line(scores: Mapping[str, object]) -> List[str]:
    """Multiclass: one line of F1 by class (the most frequent first, at most
    eight); other heads: none."""
    per_class = scores.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return []
    names = sorted(per_class, key=lambda n: -per_class[n].get("support", 0))
    shown = ", ".join(f"{n} {per_class[n]['f1']:.2f}" for n in names[:_SUMMARY_CLASSES])
    more = len(per_class) - _SUMMARY_CLASSES
    return [f"  F1 by class: {shown}" + (f" (+{more} more in {layout.METRICS_JSON})" if more > 0 else "")]


def metric_lines(metrics: Dict[str, object]) -> List[str]:
    """'name: model vs baseline' lines for a summary, and F1 by class."""
    model, base = metrics["model"], metrics["baseline"]
    return metric_table([("model", model), ("baseline", base)]) + per_class_line(model)


def summarize(result: Dict[str, object], output: str) -> str:
    """The CLI's one-screen summary of a train manifest."""
    rows = result["metrics"]["rows"]
    model_dir = os.path.abspath(output)
    logs = os.path.join(model_dir, LOGS_DIR)
    lines = [
        f"Trained on {rows['train']} rows, evaluated on {rows['eval']} held-out rows "
        f"in {result.get('elapsed_seconds', '?')} s:",
        *metric_lines(result["metrics"]),
        f"  (baseline: {result['metrics']['baseline'].get('predicts', '')})",
        *(f"WARNING: {w}" for w in result["metrics"].get("label_warnings", [])),
        f"Model in {model_dir}:",
        f"  {layout.SERVING_DIR}/ (signatures: " + ", ".join(sorted(result["signatures"]))
        + f")  {layout.METRICS_JSON} (per epoch, per class, calibration)  {layout.MANIFEST}",
    ]
    if os.path.isdir(logs):
        lines.append(f"  curves: tensorboard --logdir {logs}")
    return "\n".join(lines)
