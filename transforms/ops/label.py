"""The training label: a float for regression, 0/1 for binary (a string is 1
when it equals `positive`), class ids for multiclass (string classes ranked
by frequency from a vocabulary, unseen classes -1)."""

from __future__ import annotations

from featurebridge.transforms.ops.base import analyzer_name
from featurebridge.transforms.ops.stats import Tokens
from featurebridge.transforms.ops.vocabulary_file import apply_vocabulary, vocabulary_lines

__all__ = ["LabelOp", "label_vocabulary_name"]


def label_vocabulary_name(column: str) -> str:
    """The vocabulary file of a multiclass string label (class id = line number)."""
    return f"label_{column}"


class LabelOp:
    """The label of a spec (`spec.label`) on its column."""

    def __init__(self, label, column):
        self.label = label
        self.column = column
        self.output = label.column

    @property
    def has_classes(self) -> bool:
        """Whether its classes come from the data (a multiclass string label)."""
        return self.label.kind == "multiclass" and self.column.type == "string"

    def requests(self):
        return (Tokens(),) if self.has_classes else ()

    def results(self, stats):
        if not self.has_classes:
            return {}
        return {f"{label_vocabulary_name(self.output)}/vocabulary": vocabulary_lines(stats[Tokens()])}

    def tft_graph(self, y):
        import tensorflow_transform as tft

        if self.has_classes:
            return tft.compute_and_apply_vocabulary(
                y, num_oov_buckets=0, default_value=-1, vocab_filename=label_vocabulary_name(self.output),
                store_frequency=True, name=analyzer_name(f"label_{self.output}"),
            )
        return self.graph(y, {})

    def graph(self, y, constants):
        import tensorflow as tf

        kind = self.label.kind
        if kind == "regression":
            return tf.cast(y, tf.float32)
        if kind == "binary":
            if y.dtype == tf.string:
                return tf.cast(tf.equal(y, self.label.positive), tf.int64)
            return tf.cast(y, tf.int64)
        if self.has_classes:
            path = constants[f"{label_vocabulary_name(self.output)}/vocabulary"]
            return apply_vocabulary(y, path, 0, f"label_{self.output}", default_value=-1)
        return tf.cast(y, tf.int64)
