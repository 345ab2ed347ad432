"""The serving contract: what a featurebridge serving SavedModel takes and returns.

Everything that the exporter (`featurebridge.transforms.export`) writes and the
readers of a model (`featurebridge.transforms.predict`, TF Serving clients,
benchmarks) rely on lives here, once:

- the signature names and their input names (``serving_default`` and
  ``transform_features`` take ``examples``; ``serving_raw`` one dense tensor
  per raw column), and the raw-lists function that Beam prediction calls;
- the raw columns a request carries (`serving_columns`,
  `raw_signature_columns`) and their dtypes (`RAW_DTYPES`);
- the label head (`Head`) and what a model of each head kind outputs
  (`outputs_from_logits`, `OUTPUT_FIELDS`);
- the spec a model serves with (`serving_spec`, `load_serving_spec`).

Needs TensorFlow only: no Keras, no TFT, no Beam, so prediction workers and a
TF-only process can import it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Mapping, Tuple

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
    "SIGNATURE_DEFAULT",
    "SIGNATURE_RAW",
    "SIGNATURE_TRANSFORM",
    "WARMUP_FILE",
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

# What a model outputs per head kind, in order, with the types of the values
# ("float_list": one probability per class).
OUTPUT_FIELDS: Mapping[str, Tuple[Tuple[str, str], ...]] = {
    "binary": (("probability", "float"), ("class_id", "int")),
    "multiclass": (("probabilities", "float_list"), ("class_id", "int")),
    "regression": (("prediction", "float"),),
}


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


def outputs_from_logits(logits: tf.Tensor, head: Head) -> Dict[str, tf.Tensor]:
    """The prediction outputs, as the serving signatures return them.

    binary: probability [batch] float32, class_id [batch] int64.
    multiclass: probabilities [batch, classes], class_id [batch].
    regression: prediction [batch] float32.
    An empty batch gives empty outputs.
    """
    if head.kind == "binary":
        p = tf.sigmoid(logits[:, 0])
        return {"probability": p, "class_id": tf.cast(p >= 0.5, tf.int64)}
    if head.kind == "multiclass":
        return {"probabilities": tf.nn.softmax(logits), "class_id": tf.argmax(logits, axis=1)}
    return {"prediction": logits[:, 0]}


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
