"""constants.json: the analyzer results in plain JSON, readable from any language.

Numeric results (fill values, mean/variance, min/max, quantile boundaries)
reach `compute_constants` as one value, ``{key: [floats]}``, that
`featurebridge.transforms.analyze.AnalyzeAndTransform` computes inside the
pipeline: on the plain TFT path by evaluating a constants transform_fn (the
same TFT analyzers on the same inputs) once on a dummy row with
`evaluate_constants_fn`, on the fast path straight from its combine.
Vocabularies are read from the transform_fn's own vocabulary files.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from featurebridge.transforms import tft_concurrency
from featurebridge.transforms.layout import TRANSFORM_FN_DIR
from featurebridge.transforms.ops import LabelOp, fill_vocabulary_name, label_vocabulary_name, op_for
from featurebridge.transforms.preprocessing import CONSTANTS_PREFIX
from featurebridge.transforms.spec import FeatureSpec

__all__ = ["compute_constants", "evaluate_constants_fn", "read_vocabulary"]

_ENCODED_SPACE = b"__SPACE__"


def read_vocabulary(
    path: str, limit: Optional[int] = None, with_counts: bool = True
) -> List[Dict[str, object]]:
    """Reads a TFT vocabulary file.

    Args:
      path: the vocabulary file.
      limit: read at most this many entries.
      with_counts: the file was written with store_frequency=True ("count value" lines).

    Returns:
      [{"value": str, "count": int|None}] in file order (most frequent first;
      TFT breaks ties by value, in descending byte order).
    """
    entries = []
    with tf.io.gfile.GFile(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if with_counts:
                count, _, value = line.partition(b" ")
                # TFT writes a space inside a value as __SPACE__ when it stores
                # counts ("count value" lines); show the value as the user wrote it.
                value = value.replace(_ENCODED_SPACE, b" ")
                entry = {"value": value.decode("utf-8", errors="replace"), "count": int(float(count))}
            else:
                entry = {"value": line.decode("utf-8", errors="replace"), "count": None}
            entries.append(entry)
            if limit is not None and len(entries) >= limit:
                break
    return entries


def evaluate_constants_fn(saved_model_dir: str, spec: FeatureSpec) -> Dict[str, List[float]]:
    """The numeric analyzer results held by a constants transform_fn.

    Runs the SavedModel that ``tft_beam.AnalyzeDataset(build_constants_fn(spec))``
    produced (its transform_fn PCollection's one element is this path) on one
    dummy row: its outputs are analyzer results broadcast over the batch, so
    they do not depend on the row.

    Args:
      saved_model_dir: the constants transform_fn's SavedModel directory.
      spec: the spec the constants fn was built from (its raw columns).

    Returns:
      {"<column>/fill" | "<output>/mean" | ... : [floats]} (the
      ``__constant__/`` prefix removed). A spec with no numeric analyzer gives
      {"none": [0.0]}, a placeholder nothing reads.
    """
    dummy = {}
    for c in spec.columns:
        dtype = {"float": tf.float32, "int": tf.int64, "string": tf.string}[c.storage]
        value = tf.constant(["x"] if c.storage == "string" else [0], dtype=dtype)
        dummy[c.name] = tf.SparseTensor(indices=[[0, 0]], values=value, dense_shape=[1, 1])
    # Not while another thread of this worker traces (Flink, Spark): the
    # restored lookup tables would join that trace's resources.
    with tft_concurrency.serialized():
        result = tf.saved_model.load(saved_model_dir).transform_fn(dummy)
    values = {}
    for key, tensor in result.items():
        if key.startswith(CONSTANTS_PREFIX + "/"):
            values[key[len(CONSTANTS_PREFIX) + 1 :]] = [float(v) for v in tensor.numpy()[0]]
    return values


def _custom_fn_constants(output_dir: str, spec: FeatureSpec) -> Dict[str, object]:
    assets = os.path.join(output_dir, TRANSFORM_FN_DIR, "assets")
    vocabularies = {}
    if os.path.isdir(assets):
        for name in sorted(os.listdir(assets)):
            path = os.path.join(assets, name)
            with tf.io.gfile.GFile(path, "rb") as f:
                size = sum(1 for _ in f)
            vocabularies[name] = {"vocabulary_file": os.path.relpath(path, output_dir), "lines": size}
    return {
        "preprocessing_fn": "custom",
        "note": "Analyzer results of a custom preprocessing_fn are baked into transform_fn; "
        "only its vocabulary files are listed here.",
        "columns": {c.name: {"type": c.type} for c in spec.columns},
        "features": {},
        "vocabularies": vocabularies,
    }


def _finite(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None


def compute_constants(
    output_dir: str,
    spec: FeatureSpec,
    numeric: Optional[Mapping[str, Sequence[float]]] = None,
    top_entries: int = 20,
    custom_preprocessing_fn: bool = False,
) -> Dict[str, object]:
    """Builds the constants.json payload for an analyzed directory.

    Args:
      output_dir: a directory holding transform_fn/.
      spec: the spec used for the analysis.
      numeric: the numeric analyzer results of a spec-built run, ``{key:
        [floats]}`` keyed ``"<column>/fill"``, ``"<output>/mean"``, ``"/var"``,
        ``"/min"``, ``"/max"``, ``"/boundaries"`` (the analyzer-results
        PCollection of `AnalyzeAndTransform`). None is read as {}: a mean or
        median fill is then null, and a zscore, scaling or bucketize output
        raises KeyError. Ignored with `custom_preprocessing_fn`.
      top_entries: how many top vocabulary entries to list, with counts.
      custom_preprocessing_fn: the transform_fn came from a user's
        preprocessing_fn, so the spec's transforms do not describe it: only the
        raw columns and the vocabulary files TFT wrote are listed.

    Returns:
      {"columns": {name: {missing_policy, fill_value?}},
       "features": {output: {transform, column, ...}}, "label": {...}}.
    """
    tft_output = tft.TFTransformOutput(output_dir)
    if custom_preprocessing_fn:
        return _custom_fn_constants(output_dir, spec)
    numeric = dict(numeric or {})

    columns: Dict[str, object] = {}
    for c in spec.columns:
        entry: Dict[str, object] = {"type": c.type, "missing_policy": c.missing.policy}
        if c.missing.policy == "constant":
            entry["fill_value"] = c.missing.value
        elif c.missing.policy in ("mean", "median"):
            fill = numeric.get(f"{c.name}/fill", [math.nan])[0]
            entry["fill_value"] = int(round(fill)) if c.type == "int" and math.isfinite(fill) else _finite(fill)
        elif c.missing.policy == "most_frequent":
            top = read_vocabulary(
                tft_output.vocabulary_file_by_name(fill_vocabulary_name(c.name)), 1, with_counts=False
            )
            entry["fill_value"] = top[0]["value"] if top else None
            if top and c.storage != "string":
                entry["fill_value"] = float(top[0]["value"]) if c.type == "float" else int(float(top[0]["value"]))
        columns[c.name] = entry

    def vocabulary(name: str) -> Optional[Dict[str, object]]:
        path = tft_output.vocabulary_file_by_name(name)
        return {
            "vocabulary_size": tft_output.vocabulary_size_by_name(name),
            "vocabulary_file": os.path.relpath(path, output_dir),
            "top": read_vocabulary(path, top_entries),
        }

    features: Dict[str, object] = {}
    for c in spec.columns:
        for t in c.transforms:
            features[t.output] = {"transform": t.type, "column": c.name,
                                  **op_for(t, c).describe(numeric, vocabulary)}
    for x in spec.crosses:
        features[x.output] = {"transform": "cross", "columns": list(x.columns), "hash_buckets": x.hash_buckets}

    payload: Dict[str, object] = {"columns": columns, "features": features}
    if spec.label:
        label: Dict[str, object] = {"column": spec.label.column, "kind": spec.label.kind}
        if spec.label.positive is not None:
            label["positive"] = spec.label.positive
        if LabelOp(spec.label, spec.column(spec.label.column)).has_classes:
            path = tft_output.vocabulary_file_by_name(label_vocabulary_name(spec.label.column))
            label["classes"] = [e["value"] for e in read_vocabulary(path)]
        payload["label"] = label
    return payload
