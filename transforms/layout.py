"""The artifact layout: every folder and file name a featurebridge run writes,
and the one loader of each kind of directory it hands to the next stage.

An analyze output (``featurebridge analyze --output DIR``)::

    DIR/manifest.json           spec, inputs, row counts, versions, digests
    DIR/constants.json          the analyzer results, readable without TF
    DIR/transform_fn/           TFT's transform graph (a SavedModel)
    DIR/transformed_metadata/   the transformed schema
    DIR/transformed/part-*.tfrecord.gz    transformed tf.Examples
    DIR/rejected/rejected-*.jsonl         rows that could not be used, with why

A model (``featurebridge train --output MODEL``)::

    MODEL/manifest.json, MODEL/metrics.json
    MODEL/serving/              the serving SavedModel (raw features in)
    MODEL/serving/assets.extra/featurebridge.json   spec, head, signatures

Predictions (``featurebridge predict --output PRED``)::

    PRED/predictions-*.jsonl    one JSON object per used row
    PRED/rejected/rejected-*.jsonl        rows that could not be used, with why
    PRED/rows.json              {read, used, rejected, predicted}, written by the
                                pipeline once the counts reconcile
    PRED/manifest.json

A whole job (``featurebridge run --output RUN``): RUN/analyzed, RUN/model,
RUN/predictions (as above), RUN/summary.json.

This module imports no TensorFlow: the CLI, the expansion service and
prediction workers read layouts without paying for it.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Dict, List, Mapping

from featurebridge.transforms.errors import ArtifactError, ModelDirError
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "ANALYZED_DIR",
    "AnalyzedOutput",
    "CONSTANTS_JSON",
    "MANIFEST",
    "METRICS_JSON",
    "MODEL_DIR",
    "PREDICTIONS_DIR",
    "PREDICTIONS_PREFIX",
    "PREDICT_ROWS_JSON",
    "REJECTED_DIR",
    "REJECTED_PREFIX",
    "SERVING_DIR",
    "SERVING_INFO",
    "SUMMARY_JSON",
    "TRANSFORMED_DIR",
    "TRANSFORMED_PREFIX",
    "TRANSFORM_FN_DIR",
    "load_analyzed",
    "load_serving_info",
    "serving_dir",
]

# Every output directory.
MANIFEST = "manifest.json"
REJECTED_DIR = "rejected"
REJECTED_PREFIX = "rejected"

# An analyze output.
TRANSFORM_FN_DIR = "transform_fn"
TRANSFORMED_DIR = "transformed"
TRANSFORMED_PREFIX = "part"
CONSTANTS_JSON = "constants.json"

# A model.
SERVING_DIR = "serving"
SERVING_INFO = os.path.join("assets.extra", "featurebridge.json")
METRICS_JSON = "metrics.json"

# A whole job (`featurebridge run`).
ANALYZED_DIR = "analyzed"
MODEL_DIR = "model"
PREDICTIONS_DIR = "predictions"
SUMMARY_JSON = "summary.json"

# A predictions directory.
PREDICTIONS_PREFIX = "predictions"
PREDICT_ROWS_JSON = "rows.json"


@dataclasses.dataclass(frozen=True)
class AnalyzedOutput:
    """An analyze output directory, opened.

    Attributes:
      path: the directory.
      manifest: its manifest.json.
      spec: the feature spec that made it.
    """

    path: str
    manifest: Mapping[str, Any]
    spec: FeatureSpec

    @property
    def transform_fn_dir(self) -> str:
        return os.path.join(self.path, TRANSFORM_FN_DIR)

    @property
    def custom_preprocessing_fn(self) -> str:
        """The user's --preprocessing_fn that made it ("" for a spec-built one)."""
        return str(self.manifest.get("preprocessing_fn") or "")

    def tft_output(self):
        """TFT's view of the directory (imports TensorFlow Transform)."""
        import tensorflow_transform as tft

        return tft.TFTransformOutput(self.path)

    def transformed_files(self) -> List[str]:
        """The transformed example shards, sorted.

        Raises:
          ArtifactError: there are none (an incomplete analyze run).
        """
        pattern = os.path.join(self.path, TRANSFORMED_DIR, f"{TRANSFORMED_PREFIX}-*.tfrecord.gz")
        files = sorted(glob.glob(pattern))
        if not files:
            raise ArtifactError(
                f"No transformed examples under {os.path.join(self.path, TRANSFORMED_DIR)!r}; "
                "the analyze run looks incomplete. Re-run `featurebridge analyze`."
            )
        return files


def load_analyzed(analyzed_dir: str) -> AnalyzedOutput:
    """Opens an analyze output: its manifest and the spec that made it.

    Raises:
      ArtifactError: the directory is not an analyze output, or its manifest
        has no spec.
    """
    manifest_path = os.path.join(analyzed_dir, MANIFEST)
    if not os.path.isdir(os.path.join(analyzed_dir, TRANSFORM_FN_DIR)) or not os.path.exists(manifest_path):
        raise ArtifactError(
            f"{analyzed_dir!r} is not an analyze output (it needs {TRANSFORM_FN_DIR}/ and "
            f"{MANIFEST}). Run `featurebridge analyze` first and pass its --output."
        )
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    if "spec" not in manifest:
        raise ArtifactError(f"{manifest_path} has no 'spec' field; re-run `featurebridge analyze`.")
    spec = FeatureSpec.from_dict(manifest["spec"], source=manifest_path, trusted=True)
    return AnalyzedOutput(path=analyzed_dir, manifest=manifest, spec=spec)


def serving_dir(model_dir: str) -> str:
    """The SavedModel directory for `model_dir` (MODEL/serving or MODEL itself).

    Raises:
      ModelDirError: neither holds saved_model.pb and featurebridge.json.
    """
    for candidate in (os.path.join(model_dir, SERVING_DIR), model_dir):
        if os.path.exists(os.path.join(candidate, "saved_model.pb")) and os.path.exists(
            os.path.join(candidate, SERVING_INFO)
        ):
            return candidate
    raise ModelDirError(
        f"{model_dir!r} is not a featurebridge model: expected MODEL/{SERVING_DIR}/saved_model.pb "
        f"and {SERVING_INFO}. Pass the --output of `featurebridge train`."
    )


def load_serving_info(model_dir: str) -> Dict[str, Any]:
    """The export's description of a model (spec, label head, signatures).

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
    """
    with open(os.path.join(serving_dir(model_dir), SERVING_INFO), encoding="utf-8") as f:
        return json.load(f)
