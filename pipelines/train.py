"""`featurebridge train`: analyzed data -> trained model + raw-feature serving SavedModel.

    featurebridge train --analyzed OUT --output MODEL [--model linear|dnn|wide_and_deep]
                        [--epochs N] [--batch_size N]

Writes MODEL/serving/ (SavedModel: serving_default on raw tf.Examples,
serving_raw on named raw tensors, transform_features), MODEL/metrics.json
(model vs a trivial baseline on a held-out split) and MODEL/manifest.json.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from featurebridge.pipelines.options import TrainArgs
from featurebridge.transforms import provenance
from featurebridge.transforms.outputs import StagedOutput

__all__ = ["OPTIONS", "main", "run", "summarize", "warmup_examples"]

_LOG = logging.getLogger(__name__)
OPTIONS = TrainArgs


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
    """Trains, exports and writes MODEL atomically; returns its manifest.

    Raises:
      UnknownOptionError, RunnerConfigError: unknown, bad or missing options.
      TrainingError: the analyzed directory is unusable or too small.
      OutputExistsError: --output exists and --overwrite was not given.
    """
    args = TrainArgs.parse(list(argv if argv is not None else sys.argv[1:]))
    from featurebridge.transforms.export import export_serving_model  # TensorFlow: after the flags are checked
    from featurebridge.transforms.train import load_analyzed, train_model

    tft_output, spec = load_analyzed(args.analyzed)  # fails early on a wrong directory
    staged = StagedOutput(args.output, overwrite=args.overwrite)
    started = time.monotonic()
    manifest: Dict[str, object] = {"job": "train", "started": provenance.utc_now()}
    try:
        result = train_model(
            args.analyzed,
            model_type=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            eval_percent=args.eval_percent,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
        with open(os.path.join(args.analyzed, "manifest.json"), encoding="utf-8") as f:
            analyzed_manifest = json.load(f)
        export = export_serving_model(
            result.model,
            result.head,
            result.features,
            args.analyzed,
            spec,
            os.path.join(staged.path, "serving"),
            warmup_examples(analyzed_manifest, spec),
        )
        metrics = dict(result.metrics)
        metrics.update(model_type=args.model, head=result.head.to_dict(), training_loss_per_epoch=result.history)
        provenance.write_json_atomic(os.path.join(staged.path, "metrics.json"), metrics)
        manifest.update(
            analyzed={
                "path": os.path.abspath(args.analyzed),
                "manifest_sha256": provenance.file_digest(os.path.join(args.analyzed, "manifest.json"))["sha256"],
                "spec_digest": analyzed_manifest.get("spec_digest"),
                "rows": analyzed_manifest.get("rows", {}).get("used"),
            },
            spec=spec.to_dict(),
            spec_digest=spec.digest(),
            options={k: v for k, v in vars(args).items() if k not in ("analyzed", "output", "overwrite")},
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
    rows = result["metrics"]["rows"]
    lines = [
        f"Trained on {rows['train']} rows, evaluated on {rows['eval']} held-out rows "
        f"in {result.get('elapsed_seconds', '?')} s:",
        *metric_lines(result["metrics"]),
        f"  (baseline: {result['metrics']['baseline'].get('predicts', '')})",
        *(f"WARNING: {w}" for w in result["metrics"].get("label_warnings", [])),
        f"Model in {os.path.abspath(output)}:",
        "  serving/ (signatures: " + ", ".join(sorted(result["signatures"])) + ")  metrics.json  manifest.json",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from featurebridge.pipelines.cli import run_command

    return run_command("train", argv)


if __name__ == "__main__":
    sys.exit(main())
