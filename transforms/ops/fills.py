"""Missing-value fills, one class per policy: the value a missing cell
becomes, before any transform, at analysis and at serving alike.

A fill that learns from the data (mean, median, most frequent) gets its
statistics of the PRESENT values from the one pass (`requests`, `value`);
the column's other ops then see the filled column by adding `missing` copies
of that value to their own statistics (`featurebridge.transforms.ops.stats`).
In the graph the fill is a constant (`graph`) or, on the plain TFT path, a
TFT analyzer (`tft_graph`). An int column's mean or median fill is rounded.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from featurebridge.transforms.ops.base import analyzer_name
from featurebridge.transforms.ops.stats import Moments, Quantiles, Tokens
from featurebridge.transforms.ops.vocabulary_file import vocabulary_lines

__all__ = ["Fill", "fill_for", "fill_vocabulary_name"]

_TF_TYPES = {"float": "float32", "int": "int64", "string": "string"}
# tft.quantiles' bound for the median fill.
MEDIAN_EPSILON = 0.001


def fill_vocabulary_name(column: str) -> str:
    """The vocabulary file of a most_frequent fill of `column`."""
    return f"fill_most_frequent_{column}"


class Fill:
    """The fill of one column (`column.missing`)."""

    POLICY = ""

    def __init__(self, column):
        self.column = column
        self.key = f"{column.name}/fill"

    def requests(self):
        return ()

    def value(self, stats) -> Optional[Any]:
        """The fill value the data gives (None: no data-dependent fill)."""
        return None

    def results(self, stats) -> Dict[str, Any]:
        return {}

    def graph(self, x, constants):
        """The fill value as a tensor of the column's graph dtype."""
        import tensorflow as tf

        return tf.constant(self._neutral(), dtype=getattr(tf, _TF_TYPES[self.column.storage]))

    def tft_graph(self, x):
        return self.graph(x, {})

    def _neutral(self):
        return "" if self.column.storage == "string" else 0

    def known(self) -> Optional[Any]:
        """The fill value when it is known without data (constant, reject)."""
        return None

    def _rounded(self, value):
        """`value` as the column's graph dtype (int columns round)."""
        import tensorflow as tf

        dtype = getattr(tf, _TF_TYPES[self.column.storage])
        if self.column.type == "int":
            return tf.cast(tf.round(value), tf.int64)
        return tf.cast(value, dtype)


class ConstantFill(Fill):
    POLICY = "constant"

    def known(self):
        return self.column.missing.value

    def graph(self, x, constants):
        import tensorflow as tf

        return tf.constant(self.column.missing.value, dtype=getattr(tf, _TF_TYPES[self.column.storage]))


class RejectFill(Fill):
    """Rows with a missing value never reach the graph on the Beam path; at
    serving the same row gets a neutral value rather than failing the batch."""

    POLICY = "reject"

    def known(self):
        return self._neutral()


class MeanFill(Fill):
    POLICY = "mean"

    def requests(self):
        return (Moments(),)

    def value(self, stats):
        mean = np.float32(stats[Moments()][1])
        return float(np.round(mean)) if self.column.type == "int" else float(mean)

    def results(self, stats):
        return {self.key: np.float32(stats[Moments()][1])}

    def graph(self, x, constants):
        return self._rounded(constants[self.key])

    def tft_graph(self, x):
        import tensorflow as tf
        import tensorflow_transform as tft

        return self._rounded(tft.mean(tf.cast(x.values, tf.float32), name=analyzer_name(f"fill_{self.column.name}")))


class MedianFill(Fill):
    POLICY = "median"

    def requests(self):
        return (Quantiles(2, MEDIAN_EPSILON),)

    def _median(self, stats):
        return np.float32(np.ravel(stats[Quantiles(2, MEDIAN_EPSILON)])[0])

    def value(self, stats):
        median = self._median(stats)
        return float(np.round(median)) if self.column.type == "int" else float(median)

    def results(self, stats):
        return {self.key: self._median(stats)}

    def graph(self, x, constants):
        return self._rounded(constants[self.key])

    def tft_graph(self, x):
        import tensorflow as tf
        import tensorflow_transform as tft

        boundaries = tft.quantiles(tf.cast(x.values, tf.float32), num_buckets=2, epsilon=MEDIAN_EPSILON,
                                   name=analyzer_name(f"fill_{self.column.name}"))
        return self._rounded(tf.reshape(boundaries, [-1])[0])


class MostFrequentFill(Fill):
    """The most frequent present value (ties: the greatest as text); the
    vocabulary file `fill_vocabulary_name` holds it, as TFT's tft.vocabulary
    writes it (no counts)."""

    POLICY = "most_frequent"

    def _request(self):
        return Tokens(text="printf" if self.column.storage == "float" else "decimal")

    def requests(self):
        return (self._request(),)

    def _lines(self, stats):
        return vocabulary_lines(stats[self._request()], top_k=1, with_counts=False)

    def value(self, stats):
        table = stats[self._request()]
        if not table.tokens:
            return self._neutral()
        top = self._lines(stats)[0]
        if self.column.storage == "string":
            return top
        return float(top) if self.column.storage == "float" else int(float(top))

    def results(self, stats):
        return {f"{fill_vocabulary_name(self.column.name)}/vocabulary": self._lines(stats)}

    def graph(self, x, constants):
        return self._from_file(constants[f"{fill_vocabulary_name(self.column.name)}/vocabulary"])

    def _from_file(self, path):
        import tensorflow as tf

        # A one-line asset read per batch is cheaper than a lookup table here.
        top = tf.strings.split(tf.io.read_file(path), "\n")[0]
        if self.column.storage == "string":
            return top
        # While TFT traces its analysis phase the file is a stand-in whose
        # text is not a number; a lookup downstream runs in that phase too.
        top = tf.where(tf.strings.regex_full_match(top, r"[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?"), top, "0")
        return tf.cast(tf.strings.to_number(top, tf.float64), getattr(tf, _TF_TYPES[self.column.storage]))

    def tft_graph(self, x):
        import tensorflow as tf
        import tensorflow_transform as tft

        as_text = x.values if self.column.storage == "string" else tf.strings.as_string(x.values)
        path = tft.vocabulary(as_text, top_k=1, vocab_filename=fill_vocabulary_name(self.column.name),
                              name=analyzer_name(f"fill_{self.column.name}"))
        return self._from_file(path)


_FILLS = {f.POLICY: f for f in (ConstantFill, RejectFill, MeanFill, MedianFill, MostFrequentFill)}


def fill_for(column) -> Fill:
    """The fill of `column`'s missing-value policy."""
    return _FILLS[column.missing.policy](column)
