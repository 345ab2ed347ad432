"""constants.json: the analyzer results in plain JSON, readable from any language.

Numeric results (fill values, mean/variance, min/max, quantile boundaries)
come from the constants transform_fn that `AnalyzeAndTransform` writes beside
the real one: it runs the same TFT analyzers on the same inputs, and is
evaluated here once on a dummy row (its outputs do not depend on the row).
Vocabularies are read from the transform_fn's own vocabulary files.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional

import tensorflow as tf
import tensorflow_transform as tft

from featurebridge.transforms.analyze import CONSTANTS_FN_DIR
from featurebridge.transforms.preprocessing import CONSTANTS_PREFIX, fill_vocabulary_name, label_vocabulary_name
from featurebridge.transforms.spec import FeatureSpec

__all__ = ["compute_constants", "read_vocabulary"]

_VOCAB_TYPES = ("vocabulary", "ngrams", "bag_of_words", "tfidf")
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


def _evaluate_constants(constants_dir: str, spec: FeatureSpec) -> Dict[str, List[float]]:
    # The fast analyze path (featurebridge.transforms.fast_analyze) writes the same values,
    # keyed the same way, as JSON instead of a constants transform_fn.
    fast = os.path.join(constants_dir, "constants.json")
    if os.path.exists(fast):
        import json

        with open(fast, encoding="utf-8") as f:
            return json.load(f)
    output = tft.TFTransformOutput(constants_dir)
    dummy = {}
    for c in spec.columns:
        dtype = {"float": tf.float32, "int": tf.int64, "string": tf.string}[c.storage]
        value = tf.constant(["x"] if c.storage == "string" else [0], dtype=dtype)
        dummy[c.name] = tf.SparseTensor(indices=[[0, 0]], values=value, dense_shape=[1, 1])
    result = output.transform_raw_features(dummy)
    values = {}
    for key, tensor in result.items():
        if key.startswith(CONSTANTS_PREFIX + "/"):
            values[key[len(CONSTANTS_PREFIX) + 1 :]] = [float(v) for v in tensor.numpy()[0]]
    return values


def _custom_fn_constants(output_dir: str, spec: FeatureSpec) -> Dict[str, object]:
    assets = os.path.join(output_dir, "transform_fn", "assets")
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
    top_entries: int = 20,
    custom_preprocessing_fn: bool = False,
) -> Dict[str, object]:
    """Builds the constants.json payload for an analyzed directory.

    Args:
      output_dir: a directory holding transform_fn/ (and _constants_fn/ for a spec run).
      spec: the spec used for the analysis.
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
    constants_dir = os.path.join(output_dir, CONSTANTS_FN_DIR)
    numeric = _evaluate_constants(constants_dir, spec) if os.path.isdir(constants_dir) else {}

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

    features: Dict[str, object] = {}
    for c in spec.columns:
        for t in c.transforms:
            f: Dict[str, object] = {"transform": t.type, "column": c.name}
            key = t.output
            if t.type == "zscore":
                mean = numeric[f"{key}/mean"][0]
                var = numeric[f"{key}/var"][0]
                f.update(mean=mean, var=var, std=math.sqrt(var))
            elif t.type in ("scale_0_1", "min_max"):
                f.update(min=numeric[f"{key}/min"][0], max=numeric[f"{key}/max"][0])
                if t.type == "min_max":
                    f.update(output_min=t.options["output_min"], output_max=t.options["output_max"])
            elif t.type == "bucketize":
                f.update(num_buckets=t.options["num_buckets"], boundaries=numeric[f"{key}/boundaries"])
            elif t.type in _VOCAB_TYPES:
                path = tft_output.vocabulary_file_by_name(key)
                f.update(
                    vocabulary_size=tft_output.vocabulary_size_by_name(key),
                    vocabulary_file=os.path.relpath(path, output_dir),
                    top=read_vocabulary(path, top_entries),
                    num_oov_buckets=t.options.get("num_oov_buckets", 1),
                )
                if t.type != "vocabulary":
                    f["ngram_range"] = t.options["ngram_range"]
            else:
                f.update({k: v for k, v in t.options.items()})
            features[key] = f
    for x in spec.crosses:
        features[x.output] = {"transform": "cross", "columns": list(x.columns), "hash_buckets": x.hash_buckets}

    payload: Dict[str, object] = {"columns": columns, "features": features}
    if spec.label:
        label: Dict[str, object] = {"column": spec.label.column, "kind": spec.label.kind}
        if spec.label.positive is not None:
            label["positive"] = spec.label.positive
        if spec.label.kind == "multiclass" and spec.column(spec.label.column).type == "string":
            path = tft_output.vocabulary_file_by_name(label_vocabulary_name(spec.label.column))
            label["classes"] = [e["value"] for e in read_vocabulary(path)]
        payload["label"] = label
    return payload
