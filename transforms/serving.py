"""The serving contract: what a featurebridge serving SavedModel takes and returns.

Everything that the exporter (`featurebridge.transforms.export`) writes and the
readers of a model (`featurebridge.transforms.predict`, TF Serving clients,
benchmarks) rely on lives here, once:

- the signature names and their input names (``serving_default`` and
  ``transform_features`` take ``examples``; ``serving_raw`` one dense tensor
  per raw column), and the raw-lists function that Beam prediction calls;
- the raw columns a request carries (`serving_columns`,
  `raw_signature_columns`) and their dtypes (`RAW_DTYPES`);
- the label head (`Head`), its class names (`class_names`) and what a
  model of each head kind outputs (`outputs_from_logits`, `OUTPUT_FIELDS`,
  `SERVING_ONLY_OUTPUTS`);
- the spec a model serves with (`serving_spec`, `load_serving_spec`).

Needs TensorFlow only: no Keras, no TFT, no Beam, so prediction workers and a
TF-only process can import it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Mapping, Sequence, Tuple

import tensorflow as tf

from featurebridge.transforms import layout
from featurebridge.transforms.spec import FeatureSpec

__all__ = [
    "EXAMPLES_INPUT",
    "HEAD_KINDS",
    "Head",
    "OUTPUT_FIELDS",
    "RAW_DTYPES",
    "RAW_LISTS_FUNCTION",
    "SERVING_ONLY_OUTPUTS",
    "SIGNATURE_DEFAULT",
    "SIGNATURE_RAW",
    "SIGNATURE_TRANSFORM",
    "WARMUP_FILE",
    "class_names",
    "load_serving_spec",
    "outputs_from_logits",
    "raw_signature_columns",
    "serving_columns",
    "serving_spec",
]

# Signatures (TF Serving's predict method) and their inputs.
SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_RAW = "serving_raw"
SIGNATURE_TRANSFORM = "transform_features"
EXAMPLES_INPUT = "examples"
# Not a signature (signature inputs must be dense): a function of the saved
# module taking the serving_raw columns as ragged [batch, None] tensors, where
# an empty row is a missing value. `featurebridge predict` calls it.
RAW_LISTS_FUNCTION = "serve_raw_lists"

# Files beside the SavedModel.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

# The dtype of a raw column's values, by its storage type (`Column.storage`):
# a bool travels as an int64 0/1, a timestamp as its ISO 8601 text.
RAW_DTYPES = {"float": tf.float32, "int": tf.int64, "string": tf.string}

HEAD_KINDS = ("binary", "multiclass", "regression")

# What a model outputs per row, per head kind, in order, with the types of
# the values ("float_list": one probability per class); `featurebridge
# predict` writes these. `class_name` is the class of `class_id`.
OUTPUT_FIELDS: Mapping[str, Tuple[Tuple[str, str], ...]] = {
    "binary": (("probability", "float"), ("class_id", "int"), ("class_name", "string")),
    "multiclass": (("probabilities", "float_list"), ("class_id", "int"), ("class_name", "string")),
    "regression": (("prediction", "float"),),
}
# What the serving signatures of a classifier return besides: TF Serving's
# classification convention, `classes` [batch, n_classes] (every class name,
# in class id order) with `scores` [batch, n_classes] aligned (the
# probability of each). Prediction files leave them out (one row would
# repeat every class name).
SERVING_ONLY_OUTPUTS = ("classes", "scores")


@dataclasses.dataclass(frozen=True)
class Head:
    """The label's kind and what the model outputs.

    Attributes:
      kind: "binary", "multiclass" or "regression".
      label: the transformed label feature name.
      num_classes: classes for multiclass (2 for binary, 1 for regression).
      label_mean, label_std: regression target scale (the model predicts in
        label units; these keep its raw output near unit scale).
    """

    kind: str
    label: str
    num_classes: int = 2
    label_mean: float = 0.0
    label_std: float = 1.0

    @property
    def units(self) -> int:
        """The model's logits per row: one per class for multiclass, else 1."""
        return self.num_classes if self.kind == "multiclass" else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def class_names(
    spec: FeatureSpec, head: Head, label_vocabulary: Sequence[str] = (), label_values: Sequence[str] = ()
) -> Tuple[str, ...]:
    """The name of each class of `head`, by class id (none for regression).

    - binary, int label: "0", "1"; bool label: "false", "true"; string label:
      the one other value than the positive one seen in the data (from
      `label_values`), then the positive value, e.g. ("no", "yes"); when
      the data held no or several other values (every value but the
      positive one is class 0), "not <positive>" names class 0.
    - multiclass, string label: the label vocabulary's entries
      (`label_vocabulary`, in class id order; TFT's "<count> <value>" lines
      with frequencies are read as the value); int label: "0" .. "K-1".

    Args:
      spec: the spec the model was trained with (its label column's type).
      head: the model's head.
      label_vocabulary: the lines of the label vocabulary of a multiclass
        string label (`ops.label_vocabulary_name`); unused otherwise.
      label_values: the raw label values seen in the training data (the
        analyze statistics' class counts); used for a binary string label.

    Raises:
      ValueError: a multiclass string label whose vocabulary does not have
        one entry per class.
    """
    if head.kind == "regression":
        return ()
    ltype = spec.column(head.label).type if head.label in spec.column_names else "int"
    if head.kind == "binary":
        if ltype == "string" and spec.label is not None and spec.label.positive is not None:
            positive = spec.label.positive
            others = sorted({v for v in label_values if v != positive})
            return (others[0] if len(others) == 1 else f"not {positive}", positive)
        return ("false", "true") if ltype == "bool" else ("0", "1")
    if ltype != "string":
        return tuple(str(i) for i in range(head.num_classes))
    lines = list(label_vocabulary)
    if lines and all(line.split(" ", 1)[0].isdigit() and " " in line for line in lines):
        lines = [line.split(" ", 1)[1] for line in lines]
    if len(lines) != head.num_classes:
        raise ValueError(
            f"The label vocabulary of {head.label!r} has {len(lines)} entries but the model has "
            f"{head.num_classes} classes; re-run analyze and train together."
        )
    return tuple(lines)


def outputs_from_logits(logits: tf.Tensor, head: Head, names: Sequence[str] = ()) -> Dict[str, tf.Tensor]:
    """The prediction outputs, as the serving signatures return them.

    binary: probability [batch] float32 (of class 1), class_id [batch] int64.
    multiclass: probabilities [batch, classes], class_id [batch] (argmax).
    regression: prediction [batch] float32.
    A classifier with class `names` (`class_names`) also returns class_name
    [batch] string (the name of class_id), and TF Serving's classification
    outputs `SERVING_ONLY_OUTPUTS`: classes [batch, n] string (every name, in
    class id order) and scores [batch, n] float32 aligned with them (binary:
    1 - probability, probability). An empty batch gives empty outputs.
    """
    if head.kind == "regression":
        return {"prediction": logits[:, 0]}
    if head.kind == "binary":
        p = tf.sigmoid(logits[:, 0])
        out = {"probability": p, "class_id": tf.cast(p >= 0.5, tf.int64)}
        scores = tf.stack([1.0 - p, p], axis=1)
    else:
        scores = tf.nn.softmax(logits)
        out = {"probabilities": scores, "class_id": tf.argmax(logits, axis=1)}
    if names:
        table = tf.constant(list(names), tf.string)
        out["class_name"] = tf.gather(table, out["class_id"])
        out["classes"] = tf.tile(table[tf.newaxis, :], tf.stack([tf.shape(scores)[0], 1]))
        out["scores"] = scores
    return out


def serving_columns(spec: FeatureSpec) -> List[str]:
    """The raw columns a serving request may carry: all but the label."""
    label = spec.label.column if spec.label else None
    return [c.name for c in spec.columns if c.name != label]


def raw_signature_columns(spec: FeatureSpec) -> List[str]:
    """The inputs of the serving_raw signature: the serving columns but the key."""
    return [n for n in serving_columns(spec) if n != spec.key]


def serving_spec(spec: FeatureSpec) -> FeatureSpec:
    """`spec` without its label, for reading rows to predict on (they may lack it)."""
    label = spec.label.column if spec.label else None
    columns = tuple(c for c in spec.columns if c.name != label)
    return dataclasses.replace(spec, columns=columns, label=None)


def load_serving_spec(model_dir: str) -> FeatureSpec:
    """The feature spec the model was trained with, minus its label: the
    columns a row to predict on may carry (the key column must be present).

    Raises:
      ModelDirError: `model_dir` is not a featurebridge model.
    """
    info = layout.load_serving_info(model_dir)
    source = os.path.join(layout.serving_dir(model_dir), layout.SERVING_INFO)
    return serving_spec(FeatureSpec.from_dict(info["spec"], source=source, trusted=True))
