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
    MODEL/serving/              TF Serving's model base path (--model_base_path)
    MODEL/serving/<version>/    the serving SavedModel (raw features in); the
                                version is the export's time in epoch seconds
                                (TFX Pusher's rule), one per export
    MODEL/serving/<version>/assets.extra/featurebridge.json   spec, head,
                                class names, signatures

    `serving_dir` resolves MODEL, MODEL/serving (its highest version) or a
    version directory itself. A model exported before versions (a SavedModel
    directly in MODEL/serving/) is refused with a message to re-export it.

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
    "REPORT_HTML",
    "SERVING_DIR",
    "SERVING_FORMAT",
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
REPORT_HTML = "report.html"  # the statistics report (featurebridge.transforms.report)

# A model.
SERVING_DIR = "serving"
SERVING_INFO = os.path.join("assets.extra", "featurebridge.json")
# featurebridge.json's "format": 2 is a versioned export whose classifier
# signatures return class names; a description without it is older.
SERVING_FORMAT = 2
_SAVED_MODEL = "saved_model.pb"
_REEXPORT = "Re-run `featurebridge train` to re-export the model."
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


def _is_export(path: str) -> bool:
    return os.path.isfile(os.path.join(path, _SAVED_MODEL)) and os.path.isfile(os.path.join(path, SERVING_INFO))


def _versions(base: str) -> List[int]:
    """The versions under a TF Serving base directory, ascending: its
    subdirectories named by a non-negative integer that hold an export."""
    try:
        names = os.listdir(base)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and _is_export(os.path.join(base, n)))


def serving_dir(model_dir: str) -> str:
    """The serving SavedModel directory of `model_dir`.

    `model_dir` may be MODEL (a `featurebridge train` output), its
    MODEL/serving (TF Serving's base path) or a version directory itself
    (MODEL/serving/<version>, or a copy of one anywhere). In a base
    directory the highest version wins, as TF Serving's default policy
    picks it; version directories without saved_model.pb and
    assets.extra/featurebridge.json are skipped.

    Raises:
      ModelDirError: none of these holds an export; or MODEL/serving holds
        an unversioned export (written before versions): re-export it.
    """
    if _is_export(model_dir):
        return model_dir
    for base in (os.path.join(model_dir, SERVING_DIR), model_dir):
        versions = _versions(base)
        if versions:
            return os.path.join(base, str(versions[-1]))
    for base in (os.path.join(model_dir, SERVING_DIR), model_dir):
        if os.path.isfile(os.path.join(base, _SAVED_MODEL)):
            raise ModelDirError(
                f"{base!r} holds an unversioned SavedModel from an older featurebridge; models now live in "
                f"MODEL/{SERVING_DIR}/<version>/ (TF Serving's layout). {_REEXPORT}"
            )
    raise ModelDirError(
        f"{model_dir!r} is not a featurebridge model: expected MODEL/{SERVING_DIR}/<version>/{_SAVED_MODEL} "
        f"and <version>/{SERVING_INFO} (MODEL, MODEL/{SERVING_DIR} or a version directory). "
        "Pass the --output of `featurebridge train`."
    )


def load_serving_info(model_dir: str) -> Dict[str, Any]:
    """The export's description of a model (spec, label head, signatures).

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model, or its
        description is damaged (the message names the file).
    """
    path = os.path.join(serving_dir(model_dir), SERVING_INFO)
    info = read_json_artifact(path, ModelDirError, _REEXPORT)
    if not isinstance(info.get("spec"), Mapping):
        raise ModelDirError(f"{path} has no 'spec' object: it is damaged. {_REEXPORT}")
    if info.get("format") != SERVING_FORMAT:
        raise ModelDirError(
            f"{path} was written by an older featurebridge (format {info.get('format', 1)!r}, this one reads "
            f"{SERVING_FORMAT}: versioned, with class names). {_REEXPORT}"
        )
    return info
