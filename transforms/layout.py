"""The artifact layout: every folder and file name a featurebridge run writes,
and the one loader of each kind of directory it hands to the next stage.

An analyze output (``featurebridge analyze --output DIR``)::

    DIR/manifest.json           spec, inputs, row counts, versions, digests
    DIR/constants.json          the analyzer results, readable without TF
    DIR/transform_fn/           TFT's transform graph (a SavedModel)
    DIR/transformed_metadata/   the transformed schema
    DIR/transformed/part-*.tfrecord.gz    transformed tf.Examples
    DIR/rejected/rejected-*.jsonl         rows that could not be used, with why
    DIR/metadata/               the raw schema (TFT's layout: tft.TFTransformOutput(DIR).raw_metadata)
    DIR/pre_transform_stats/FeatureStats.pb    raw columns' statistics (TFDV's
                                DatasetFeatureStatisticsList, binary)
    DIR/post_transform_stats/FeatureStats.pb   transformed features' statistics

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
    "FEATURE_STATS_FILE",
    "MANIFEST",
    "METRICS_JSON",
    "MODEL_DIR",
    "PREDICTIONS_DIR",
    "PREDICTIONS_PREFIX",
    "PREDICT_ROWS_JSON",
    "POST_TRANSFORM_STATS_DIR",
    "PRE_TRANSFORM_STATS_DIR",
    "RAW_METADATA_DIR",
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
    "read_json_artifact",
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
# TFX Transform's names: TFT reads RAW_METADATA_DIR; TFDV reads the stats files.
RAW_METADATA_DIR = "metadata"
PRE_TRANSFORM_STATS_DIR = "pre_transform_stats"
POST_TRANSFORM_STATS_DIR = "post_transform_stats"
FEATURE_STATS_FILE = "FeatureStats.pb"

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
        """The transformed example shards, sorted, checked against the
        manifest: each shard the analyze run wrote must be there with the size
        it had (a truncated, replaced or missing shard would otherwise train on
        part of the data, or fail deep inside TensorFlow naming no file).
        Outputs whose manifest records no file digests are not checked.

        Raises:
          ArtifactError: there are none (an incomplete analyze run), or one is
            missing or not the size the analyze run wrote; the message names it.
        """
        directory = os.path.join(self.path, TRANSFORMED_DIR)
        files = sorted(glob.glob(os.path.join(directory, f"{TRANSFORMED_PREFIX}-*.tfrecord.gz")))
        outputs = self.manifest.get("outputs")
        written = {
            rel: digest for rel, digest in (outputs.items() if isinstance(outputs, Mapping) else ())
            if rel.startswith(TRANSFORMED_DIR + os.sep) and isinstance(digest, Mapping)
        }
        for rel, digest in sorted(written.items()):
            path = os.path.join(self.path, rel)
            size = os.path.getsize(path) if os.path.isfile(path) else None
            if size != digest.get("bytes"):
                found = "is missing" if size is None else f"has {size} bytes"
                raise ArtifactError(
                    f"{path} {found}, but the analyze run wrote {digest.get('bytes')} bytes there "
                    f"({os.path.join(self.path, MANIFEST)} records each file it wrote): the shard was "
                    "truncated, replaced or removed. Re-run `featurebridge analyze` to rewrite "
                    f"{self.path!r}, or restore it from a copy."
                )
        if not files:
            raise ArtifactError(
                f"No transformed examples under {directory!r}; "
                "the analyze run looks incomplete. Re-run `featurebridge analyze`."
            )
        return files


def read_json_artifact(path: str, error: type = ArtifactError, fix: str = "") -> Dict[str, Any]:
    """Reads a JSON object file that a featurebridge run wrote.

    Args:
      path: the file.
      error: the ArtifactError subclass to raise.
      fix: what to do, appended to the message.

    Raises:
      `error`: the file is unreadable, not valid JSON, or not a JSON object;
        the message names the file and what was wrong.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise error(f"{path} cannot be read as JSON ({reason}): it is damaged or was not written by featurebridge. {fix}".rstrip()) from None
    if not isinstance(value, dict):
        raise error(f"{path} holds a JSON {type(value).__name__}, not the object featurebridge writes: it is damaged. {fix}".rstrip())
    return value


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
    manifest = read_json_artifact(manifest_path, fix="Re-run `featurebridge analyze` to rewrite the directory.")
    if not isinstance(manifest.get("spec"), Mapping):
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
      ModelDirError: `model_dir` is not a featurebridge model, or its
        description is damaged (the message names the file).
    """
    path = os.path.join(serving_dir(model_dir), SERVING_INFO)
    info = read_json_artifact(path, ModelDirError, "Re-run `featurebridge train` to re-export the model.")
    if not isinstance(info.get("spec"), Mapping):
        raise ModelDirError(f"{path} has no 'spec' object: it is damaged. Re-run `featurebridge train` to re-export the model.")
    return info
