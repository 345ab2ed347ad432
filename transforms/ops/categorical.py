"""Categorical ops: a frequency-ranked vocabulary (top_k, frequency_threshold,
OOV buckets) and hash buckets. The vocabulary's analyzer counts the filled
column's values (numbers as tf.strings.as_string writes them) in the one pass;
the mapping is TFT's own vocabulary lookup over TFT's own file format."""

from __future__ import annotations

from typing import Optional

from featurebridge.transforms.ops.base import Op, analyzer_name
from featurebridge.transforms.ops.stats import Tokens
from featurebridge.transforms.ops.vocabulary_file import apply_vocabulary, vocabulary_lines
from featurebridge.transforms.spec_tables import REQUIRED

__all__ = ["Hash", "Vocabulary", "check_vocabulary_options"]


def check_vocabulary_options(options) -> Optional[str]:
    """What is wrong with a vocabulary's top_k, frequency_threshold or OOV buckets (None: nothing)."""
    for name, minimum in (("top_k", 1), ("frequency_threshold", 0), ("num_oov_buckets", 0)):
        if options.get(name) is not None and options[name] < minimum:
            return f"field {name!r} must be >= {minimum}; got {options[name]}."
    return None


def as_text(x):
    """`x` as text: a string tensor unchanged, numbers via tf.strings.as_string."""
    from featurebridge.transforms.graph_rules import as_string  # TensorFlow: in the graph only

    return as_string(x)


class Vocabulary(Op):
    """The id of the filled value in its frequency-ranked vocabulary; values
    not in it go to one of `num_oov_buckets` hashed buckets (-1 with none)."""

    TYPE = "vocabulary"
    COLUMN_TYPES = ("string", "int", "bool")
    OPTIONS = {"top_k": (int, None), "frequency_threshold": (int, None), "num_oov_buckets": (int, 1)}
    ROW_TYPE = int

    @classmethod
    def check_options(cls, options):
        return check_vocabulary_options(options)

    def _request(self):
        return Tokens()

    def requests(self):
        return (self._request(),)

    def results(self, stats):
        lines = vocabulary_lines(stats[self._request()], self.options.get("top_k"),
                                 self.options.get("frequency_threshold"))
        return {f"{self.output}/vocabulary": lines}

    def tft_graph(self, x):
        import tensorflow_transform as tft

        o = self.options
        return {self.output: tft.compute_and_apply_vocabulary(
            as_text(x), top_k=o["top_k"], frequency_threshold=o["frequency_threshold"],
            num_oov_buckets=o["num_oov_buckets"], vocab_filename=self.output, store_frequency=True, name=analyzer_name(self.output),
        )}

    def graph(self, x, constants):
        return {self.output: apply_vocabulary(as_text(x), constants[f"{self.output}/vocabulary"],
                                              self.options["num_oov_buckets"], self.output)}

    def describe(self, numeric, vocabulary):
        entry = dict(vocabulary(self.output) or {})
        entry["num_oov_buckets"] = self.options.get("num_oov_buckets", 1)
        return entry

    def model_hints(self, vocabulary):
        info = vocabulary(self.output)
        if not info:
            return {}
        return {self.output: ("categorical", info["vocabulary_size"] + self.options["num_oov_buckets"], None)}


class Hash(Op):
    """The filled value's hash bucket (tft.hash_strings of its text)."""

    TYPE = "hash"
    COLUMN_TYPES = ("string", "int", "bool")
    OPTIONS = {"hash_buckets": (int, REQUIRED)}
    ROW_TYPE = int

    @classmethod
    def check_options(cls, options):
        if options["hash_buckets"] < 1:
            return f"field 'hash_buckets' must be >= 1; got {options['hash_buckets']}."
        return None

    def graph(self, x, constants):
        import tensorflow_transform as tft

        return {self.output: tft.hash_strings(as_text(x), self.options["hash_buckets"], name=analyzer_name(self.output))}

    def model_hints(self, vocabulary):
        return {self.output: ("categorical", self.options["hash_buckets"], None)}
