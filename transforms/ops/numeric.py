"""Numeric ops: z-score, [0, 1] and min/max scaling, quantile buckets, log1p,
clip, identity. Their analyzers need the filled column's moments or its
quantile sketch; the mapping uses TFT's own formulas (`tft.apply_buckets`
for buckets)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from featurebridge.transforms.ops.base import Op, RejectRule, analyzer_name
from featurebridge.transforms.ops.stats import Moments, Quantiles
from featurebridge.transforms.spec_tables import NUMBER, NUMERIC_TYPES, REQUIRED

__all__ = ["Bucketize", "Clip", "Identity", "Log1p", "MinMax", "Scale01", "ZScore", "bucketize_epsilon"]


def bucketize_epsilon(num_buckets: int) -> float:
    """The quantile sketch's error bound we use for `num_buckets` buckets."""
    return min(1.0 / num_buckets, 0.01)


def _float(x):
    import tensorflow as tf

    return tf.cast(x, tf.float32)


class ZScore(Op):
    """(x - mean) / std of the filled column (population std); x - mean when std is 0."""

    TYPE = "zscore"
    COLUMN_TYPES = NUMERIC_TYPES

    def requests(self):
        return (Moments(),)

    def results(self, stats):
        _, mean, var, _, _ = stats[Moments()]
        return {f"{self.output}/mean": np.float32(mean), f"{self.output}/var": np.float32(var)}

    def tft_graph(self, x):
        import tensorflow_transform as tft

        return {self.output: tft.scale_to_z_score(_float(x), name=analyzer_name(self.output))}

    def tft_results(self, x):
        import tensorflow_transform as tft

        x = _float(x)
        return {f"{self.output}/mean": tft.mean(x, name=analyzer_name(f"{self.output}_mean")),
                f"{self.output}/var": tft.var(x, name=analyzer_name(f"{self.output}_var"))}

    def graph(self, x, constants):
        import tensorflow as tf

        with tf.name_scope(self.output):
            numerator = _float(x) - constants[f"{self.output}/mean"]
            std = tf.sqrt(constants[f"{self.output}/var"])
            return {self.output: tf.where(tf.not_equal(std, 0), tf.divide(numerator, std), numerator)}

    def describe(self, numeric, vocabulary):
        mean, var = numeric[f"{self.output}/mean"][0], numeric[f"{self.output}/var"][0]
        return {"mean": mean, "var": var, "std": math.sqrt(var)}


class MinMax(Op):
    """Scales the filled column from [min, max] to [output_min, output_max]
    (TFT's scale_by_min_max: sigmoid(x) projected when min >= max)."""

    TYPE = "min_max"
    COLUMN_TYPES = NUMERIC_TYPES
    OPTIONS = {"output_min": (NUMBER, 0.0), "output_max": (NUMBER, 1.0)}

    @classmethod
    def check_options(cls, options):
        if options["output_min"] >= options["output_max"]:
            return "'output_min' must be less than 'output_max'."
        return None

    def _range(self):
        return float(self.options["output_min"]), float(self.options["output_max"])

    def requests(self):
        return (Moments(),)

    def results(self, stats):
        _, _, _, low, high = stats[Moments()]
        return {f"{self.output}/min": np.float32(low), f"{self.output}/max": np.float32(high)}

    def tft_graph(self, x):
        import tensorflow_transform as tft

        low, high = self._range()
        return {self.output: tft.scale_by_min_max(_float(x), output_min=low, output_max=high, name=analyzer_name(self.output))}

    def tft_results(self, x):
        import tensorflow_transform as tft

        x = _float(x)
        return {f"{self.output}/min": tft.min(x, name=analyzer_name(f"{self.output}_min")),
                f"{self.output}/max": tft.max(x, name=analyzer_name(f"{self.output}_max"))}

    def graph(self, x, constants):
        import tensorflow as tf

        out_low, out_high = self._range()
        low, high = constants[f"{self.output}/min"], constants[f"{self.output}/max"]
        with tf.name_scope(self.output):
            x = _float(x)
            numerator = x - low
            in_range = tf.cast(tf.zeros_like(numerator) + tf.cast(low < high, numerator.dtype), tf.bool)
            scaled = tf.where(in_range, numerator / (high - low), tf.math.sigmoid(x))
            return {self.output: scaled * (out_high - out_low) + out_low}

    def describe(self, numeric, vocabulary):
        entry = {"min": numeric[f"{self.output}/min"][0], "max": numeric[f"{self.output}/max"][0]}
        if self.TYPE == "min_max":
            entry.update(output_min=self.options["output_min"], output_max=self.options["output_max"])
        return entry


class Scale01(MinMax):
    """MinMax onto [0, 1] (TFT's scale_to_0_1)."""

    TYPE = "scale_0_1"
    OPTIONS = {}

    @classmethod
    def check_options(cls, options):
        return None

    def _range(self):
        return 0.0, 1.0

    def tft_graph(self, x):
        import tensorflow_transform as tft

        return {self.output: tft.scale_to_0_1(_float(x), name=analyzer_name(self.output))}


class Bucketize(Op):
    """The filled column's quantile bucket (0..num_buckets-1), boundaries from TFT's sketch."""

    TYPE = "bucketize"
    COLUMN_TYPES = NUMERIC_TYPES
    OPTIONS = {"num_buckets": (int, REQUIRED)}
    ROW_TYPE = int

    @classmethod
    def check_options(cls, options):
        if options["num_buckets"] < 2:
            return f"field 'num_buckets' must be >= 2; got {options['num_buckets']}."
        return None

    def _request(self):
        n = self.options["num_buckets"]
        return Quantiles(n, bucketize_epsilon(n))

    def requests(self):
        return (self._request(),)

    def results(self, stats):
        return {f"{self.output}/boundaries": np.asarray(stats[self._request()], np.float32).reshape(1, -1)}

    def tft_graph(self, x):
        import tensorflow_transform as tft

        n = self.options["num_buckets"]
        return {self.output: tft.bucketize(_float(x), n, epsilon=bucketize_epsilon(n), name=analyzer_name(self.output))}

    def tft_results(self, x):
        import tensorflow_transform as tft

        n = self.options["num_buckets"]
        return {f"{self.output}/boundaries": tft.quantiles(_float(x), n, epsilon=bucketize_epsilon(n),
                                                           name=analyzer_name(f"{self.output}_q"))}

    def graph(self, x, constants):
        import tensorflow_transform as tft

        return {self.output: tft.apply_buckets(_float(x), constants[f"{self.output}/boundaries"], name=self.output)}

    def describe(self, numeric, vocabulary):
        return {"num_buckets": self.options["num_buckets"], "boundaries": numeric[f"{self.output}/boundaries"]}

    def model_hints(self, vocabulary):
        return {self.output: ("categorical", self.options["num_buckets"], None)}


class Log1p(Op):
    """log(1 + x); a row whose value is <= -1 is rejected by the readers."""

    TYPE = "log1p"
    COLUMN_TYPES = NUMERIC_TYPES

    def reject_rule(self) -> Optional[RejectRule]:
        return RejectRule(lambda v: v <= -1, "log1p needs values greater than -1", "log1p domain")

    def graph(self, x, constants):
        import tensorflow as tf

        return {self.output: tf.math.log1p(_float(x), name=self.output)}


class Clip(Op):
    """x limited to [min, max] (either bound may be left out)."""

    TYPE = "clip"
    COLUMN_TYPES = NUMERIC_TYPES
    OPTIONS = {"min": (NUMBER, None), "max": (NUMBER, None)}

    @classmethod
    def check_options(cls, options):
        if options["min"] is None and options["max"] is None:
            return "give 'min', 'max' or both."
        if options["min"] is not None and options["max"] is not None and options["min"] > options["max"]:
            return "'min' must not exceed 'max'."
        return None

    def graph(self, x, constants):
        import tensorflow as tf

        low = -math.inf if self.options["min"] is None else float(self.options["min"])
        high = math.inf if self.options["max"] is None else float(self.options["max"])
        return {self.output: tf.clip_by_value(_float(x), low, high, name=self.output)}


class Identity(Op):
    """The filled value, unchanged (its stored type)."""

    TYPE = "identity"
    COLUMN_TYPES = ("float", "int", "string", "bool")
    ROW_TYPE = None

    def graph(self, x, constants):
        import tensorflow as tf

        return {self.output: tf.identity(x, name=self.output)}
