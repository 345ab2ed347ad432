"""The serving SavedModel: raw features in, predictions out, with the TFT graph inside.

Layout (TF Serving's): `export_serving_model` writes a new numbered version
directory under a base directory, MODEL/serving/<version>/, and TF Serving
is pointed at the base (``--model_base_path=/abs/MODEL/serving``). The
version is the export time in whole epoch seconds, as TFX's Pusher and
Estimator exports number theirs: later exports get higher numbers, so TF
Serving's default policy (serve the highest version) picks up a retrained
model without configuration, and the number says when it was made. If the
base already holds that number or a higher one (two exports in one second,
a clock set back), the version is one above the highest. The export's
description, assets.extra/featurebridge.json (`layout.SERVING_INFO`), is
inside the version directory, so a copied version is complete.

Signatures (all with TF Serving's predict method name):

- ``serving_default``: ``examples``, serialized tf.Example with RAW features
  keyed by the columns' file names (`Column.source`, the spec name unless the
  spec says otherwise); the label is never needed.
- ``serving_raw``: one named dense tensor per raw column (not the label or
  key), named by the spec name, shape [batch] (float32, int64 or string; a
  bool is an int64 0/1, a timestamp its ISO 8601 text).
- ``transform_features``: ``examples`` -> the transformed features. A sparse
  feature comes back as ``<name>__values`` and ``<name>__row_lengths``.

Missing values mean the same in every signature as in the readers: an absent
feature, a NaN float, an empty or blank string or one of the column's null
markers is filled by the column's policy. The rule lives in the transform
graph itself (`preprocessing.drop_missing`), so TF Serving applies it too.

Besides the signatures, the saved module has ``serve_raw_lists``
(`serving.RAW_LISTS_FUNCTION`): the serving_raw columns as ragged
[batch, None] tensors, where an empty row is a missing value (an int has no
other way to say so). `featurebridge predict` feeds it Arrow columns.

Names, inputs and prediction outputs: see `featurebridge.transforms.serving`
(`outputs_from_logits`). A classifier's signatures return `class_name` (the
predicted class), and TF Serving's classification outputs `classes` and
`scores` ([batch, n_classes], aligned) besides the probabilities and class
ids; the class names are those of the label (`serving.class_names`).

The TFT layer is kept as an attribute of the exported module so that its
vocabulary assets and tables are saved (without it: "Table not initialized"
at serving). The export needs only TensorFlow to load, never TFT or Keras.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from featurebridge.transforms import layout
from featurebridge.transforms.preprocessing import raw_feature_spec
from featurebridge.transforms.serving import (
    EXAMPLES_INPUT,
    RAW_DTYPES,
    RAW_LISTS_FUNCTION,
    SIGNATURE_DEFAULT,
    SIGNATURE_RAW,
    SIGNATURE_TRANSFORM,
    WARMUP_FILE,
    Head,
    class_names,
    outputs_from_logits,
    raw_signature_columns,
    serving_columns,
)
from featurebridge.transforms.ops import label_vocabulary_name
from featurebridge.transforms.spec import SPLIT_FEATURE, FeatureSpec

__all__ = [
    "export_serving_model",
    "label_class_names",
    "next_version",
    "write_warmup_requests",
]

_LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# The exported module


def _flatten(features: Mapping[str, object]) -> Dict[str, tf.Tensor]:
    """Signature outputs must be dense tensors: a sparse [batch, n] feature
    becomes its values and per-row lengths (a ragged layout)."""
    out = {}
    for name, x in features.items():
        if name == SPLIT_FEATURE:  # training's split bucket, not a feature
            continue
        if isinstance(x, tf.SparseTensor):
            ragged = tf.RaggedTensor.from_sparse(x)
            out[f"{name}__values"] = ragged.flat_values
            out[f"{name}__row_lengths"] = ragged.row_lengths()
        elif isinstance(x, tf.RaggedTensor):
            out[f"{name}__values"] = x.flat_values
            out[f"{name}__row_lengths"] = x.row_lengths()
        else:
            out[name] = x
    return out


def _dense_to_sparse(x: tf.Tensor) -> tf.SparseTensor:
    """[batch] dense -> [batch, 1] sparse with every value; the transform
    graph then drops the ones that mean missing (NaN, "", null markers)."""
    rows = tf.range(tf.shape(x, out_type=tf.int64)[0])
    indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
    return tf.SparseTensor(indices, x, tf.stack([tf.shape(x, out_type=tf.int64)[0], 1]))


def next_version(base: str, now: Optional[float] = None) -> int:
    """The version number of a new export under `base`: `now` (default: the
    current time) in whole epoch seconds, or one above the highest numbered
    directory already there if that is not lower. A missing or empty base
    gives the time."""
    stamp = int(time.time() if now is None else now)
    try:
        taken = [int(n) for n in os.listdir(base) if n.isdigit()]
    except OSError:
        taken = []
    return max([stamp] + [v + 1 for v in taken])


def _label_values(analyzed_dir: str, label: str) -> List[str]:
    """The raw values of the label column in the analyze statistics' class
    counts (`layout.PRE_TRANSFORM_STATS_DIR`); [] when there are none (an
    output written before statistics, or unreadable ones)."""
    from featurebridge.transforms.errors import ArtifactError
    from featurebridge.transforms.stats_proto import class_counts, load_statistics

    path = os.path.join(analyzed_dir, layout.PRE_TRANSFORM_STATS_DIR, layout.FEATURE_STATS_FILE)
    if not os.path.isfile(path):
        return []
    try:
        return [value for value, _ in class_counts(load_statistics(path), label)]
    except ArtifactError as e:
        _LOG.warning("Class names: the statistics are unreadable (%s); class 0 is named 'not <positive>'.", e)
        return []


def label_class_names(spec: FeatureSpec, head: Head, tft_output, analyzed_dir: str) -> Tuple[str, ...]:
    """`serving.class_names` of the head, reading the label vocabulary of a
    multiclass string label, or the values of a binary string label, from
    the analyze output. `train` names the classes of its metrics with it too."""
    vocabulary: Sequence[str] = ()
    values: Sequence[str] = ()
    ltype = spec.column(head.label).type if head.label in spec.column_names else None
    if head.kind == "multiclass" and ltype == "string":
        entries = tft_output.vocabulary_by_name(label_vocabulary_name(head.label))
        vocabulary = [e.decode("utf-8", errors="replace") if isinstance(e, bytes) else str(e) for e in entries]
    elif head.kind == "binary" and ltype == "string":
        values = _label_values(analyzed_dir, head.label)
    return class_names(spec, head, vocabulary, values)


def export_serving_model(
    model,
    head: Head,
    features: Sequence[object],
    analyzed_dir: str,
    spec: FeatureSpec,
    export_base: str,
    warmup_examples: Optional[Sequence[bytes]] = None,
    version: Optional[int] = None,
) -> Dict[str, object]:
    """Saves the serving SavedModel (see the module docstring) as a new
    version under `export_base`: ``export_base/<version>/``.

    Args:
      model: the trained Keras model (transformed features -> logits).
      head: its label head.
      features: the model's inputs (`model.FeatureInfo`: only these
        transformed features, and their `weights` features, feed it).
      analyzed_dir: the analyze output whose transform_fn the model was trained on.
      spec: the feature spec of that analyze run.
      export_base: TF Serving's base directory (MODEL/serving); created if
        missing. Versions already there are kept.
      warmup_examples: serialized raw tf.Examples for the TF Serving warm-up
        file; None writes one empty example (all features missing).
      version: the version number; None takes `next_version(export_base)`.

    Returns:
      {"path": the version directory, "version": its number, "class_names":
      [...] (empty for regression), "signatures": {name: {"inputs": [...],
      "outputs": [...]}}}.

    Raises:
      ArtifactError: `analyzed_dir` is not an analyze output.
      FileExistsError: ``export_base/<version>`` exists already.
      ValueError: the transform graph does not produce the model's inputs,
        or the label vocabulary does not match the head's classes.
    """
    version = next_version(export_base) if version is None else int(version)
    export_dir = os.path.join(export_base, str(version))
    if os.path.exists(export_dir):
        raise FileExistsError(f"{export_dir} exists already: each export needs a new version number.")
    tft_output = layout.load_analyzed(analyzed_dir).tft_output()
    names = label_class_names(spec, head, tft_output, analyzed_dir)
    # tf.Example keys are the file column names; the transform graph's inputs the spec names.
    sources = {c.name: c.source for c in spec.columns}
    parse_spec = {sources[k]: v for k, v in raw_feature_spec(spec).items() if k in serving_columns(spec)}
    model_inputs = sorted({f.name for f in features} | {f.weights for f in features if f.weights})
    types = {c.name: c.storage for c in spec.columns}

    def parse_raw(examples):
        parsed = tf.io.parse_example(examples, parse_spec)
        return {name: parsed[sources[name]] for name in serving_columns(spec)}

    module = tf.Module()
    module.model = model
    # Tracked here so that the transform graph's assets and tables are saved.
    module.tft_layer = tft_output.transform_features_layer()

    def transform_raw(raw: Mapping[str, tf.SparseTensor]) -> Dict[str, object]:
        return module.tft_layer(dict(raw))

    def predict_from_raw(raw) -> Dict[str, tf.Tensor]:
        transformed = transform_raw(raw)
        missing = [n for n in model_inputs if n not in transformed]
        if missing:
            raise ValueError(f"The transform graph does not produce the model inputs {missing}.")
        logits = module.model({n: transformed[n] for n in model_inputs}, training=False)
        return outputs_from_logits(logits, head, names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(examples):
        return predict_from_raw(parse_raw(examples))

    raw_signature = {n: tf.TensorSpec([None], RAW_DTYPES[types[n]], name=n) for n in raw_signature_columns(spec)}
    lists_signature = {
        n: tf.RaggedTensorSpec([None, None], RAW_DTYPES[types[n]], ragged_rank=1, row_splits_dtype=tf.int64)
        for n in raw_signature_columns(spec)
    }

    @tf.function(input_signature=[raw_signature])
    def serve_raw(raw):
        return predict_from_raw({n: _dense_to_sparse(raw[n]) for n in raw})

    @tf.function(input_signature=[lists_signature])
    def serve_raw_lists(raw):
        # As parse_example gives a VarLenFeature: [batch, longest row] sparse.
        return predict_from_raw({n: raw[n].to_sparse() for n in raw})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def transform_features(examples):
        transformed = transform_raw(parse_raw(examples))
        return _flatten(transformed)

    module.serve_examples = serve_examples
    module.serve_raw = serve_raw
    setattr(module, RAW_LISTS_FUNCTION, serve_raw_lists)
    module.transform_features = transform_features
    signatures = {
        SIGNATURE_DEFAULT: serve_examples.get_concrete_function(),
        SIGNATURE_RAW: serve_raw.get_concrete_function(),
        SIGNATURE_TRANSFORM: transform_features.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    os.makedirs(os.path.dirname(os.path.join(export_dir, WARMUP_FILE)), exist_ok=True)
    examples = list(warmup_examples or []) or [tf.train.Example().SerializeToString()]
    write_warmup_requests(os.path.join(export_dir, WARMUP_FILE), examples)
    inputs = {
        SIGNATURE_DEFAULT: [EXAMPLES_INPUT],
        SIGNATURE_RAW: sorted(raw_signature_columns(spec)),
        SIGNATURE_TRANSFORM: [EXAMPLES_INPUT],
    }
    described = {
        name: {"inputs": inputs[name], "outputs": sorted(fn.structured_outputs)}
        for name, fn in signatures.items()
    }
    info = {
        "format": layout.SERVING_FORMAT, "version": version, "spec": spec.to_dict(), "head": head.to_dict(),
        "class_names": list(names), "signatures": described, "model_inputs": model_inputs,
    }
    with open(os.path.join(export_dir, layout.SERVING_INFO), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    _LOG.info("Exported the serving model to %s (version %d)", export_dir, version)
    return {"path": export_dir, "version": version, "class_names": list(names), "signatures": described}


def write_warmup_requests(path: str, examples: Sequence[bytes], model_name: str = "featurebridge") -> int:
    """Writes TF Serving warm-up requests: one PredictionLog per example batch
    for serving_default, as a TFRecord file. Returns the number of records.

    Raises:
      ImportError: tensorflow-serving-api is not installed (says how to install it).
    """
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as e:  # pragma: no cover - it is a pinned dependency
        raise ImportError(
            "Writing TF Serving warm-up requests needs tensorflow-serving-api: "
            "pip install -c constraints.txt tensorflow-serving-api"
        ) from e
    batches = [list(examples)]
    if len(examples) > 1:
        batches.append(list(examples[:1]))
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_DEFAULT)
            )
            request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return len(batches)
