"""`featurebridge train`: analyzed data -> trained model + raw-feature serving SavedModel.

`run(argv)` is the command (usage: featurebridge.pipelines.commands);
`run_train` is the same job with typed arguments. Writes MODEL/serving/,
MODEL/metrics.json and MODEL/manifest.json (names: featurebridge.transforms.layout).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from featurebridge.pipelines.options import TrainArgs
from featurebridge.transforms import layout, provenance
from featurebridge.transforms.staging import StagedOutput

__all__ = [ "metric_lines", "run", "run_train", "summarize", "warmup_examples"]

_LOG = logging.getLogger(__name__)


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
        metrics.update(model_type=model, head=result.head.to_dict(), training_loss_per_epoch=result.history)
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
            metrics={
                "model": metrics["model"],
                "baseline": metrics["baseline"],
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


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def metric_lines(metrics: Dict[str, object]) -> List[str]:
    """'name: model vs baseline' lines for a summary."""
    model, base = metrics["model"], metrics["baseline"]
    names = [k for k in ("auc", "accuracy", "loss", "rmse", "mae") if k in model]
    return [f"  {k:9s} model {_fmt(model[k])}   baseline {_fmt(base.get(k))}" for k in names]


def summarize(result: Dict[str, object], output: str) -> str:
    """The CLI's one-screen summary of a train manifest."""
    rows = result["metrics"]["rows"]
    lines = [
        f"Trained on {rows['train']} rows, evaluated on {rows['eval']} held-out rows "
        f"in {result.get('elapsed_seconds', '?')} s:",
        *metric_lines(result["metrics"]),
        f"  (baseline: {result['metrics']['baseline'].get('predicts', '')})",
        *(f"WARNING: {w}" for w in result["metrics"].get("label_warnings", [])),
        f"Model in {os.path.abspath(output)}:",
        f"  {layout.SERVING_DIR}/ (signatures: " + ", ".join(sorted(result["signatures"]))
        + f")  {layout.METRICS_JSON}  {layout.MANIFEST}",
    ]
    return "\n".join(lines)

