"""Text ops: n-gram ids, bag-of-words ids and tf-idf, over a free-text column
split as `featurebridge.transforms.ops.text_split.TextSplit` says.

Their analyzers count n-grams (per occurrence, or per row for a bag of words)
in the one pass; tf-idf also counts the rows each n-gram occurs in. One
number needs the finished vocabulary: how many rows hold an n-gram outside
it (tf-idf's OOV document frequency). The one-pass analyzer counts it in a
second, narrow pass (`TfIdf.rows_with_oov`) when a spec has tf-idf; see
`featurebridge.transforms.one_pass`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurebridge.transforms.errors import excerpt
from featurebridge.transforms.ops.base import Op, analyzer_name
from featurebridge.transforms.ops.categorical import check_vocabulary_options
from featurebridge.transforms.ops.stats import Tokens
from featurebridge.transforms.ops.text_split import TextSplit
from featurebridge.transforms.ops.vocabulary_file import (
    SPACE,
    apply_vocabulary,
    empty_vocabulary_line,
    ranked_tokens,
    vocabulary_lines,
)
from featurebridge.transforms.spec_tables import REQUIRED

__all__ = ["BagOfWords", "NGrams", "TfIdf", "OOV_DOCUMENTS", "ROWS"]

# Keys of the extra statistics the one pass hands to `results`.
ROWS = "rows"
OOV_DOCUMENTS = "oov_documents"


def _check_ngram_range(options):
    r = options["ngram_range"]
    if (
        not isinstance(r, list)
        or len(r) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in r)
        or not 1 <= r[0] <= r[1]
    ):
        return f"'ngram_range' must be [min, max] with 1 <= min <= max; got {excerpt(r)}."
    options["ngram_range"] = [int(r[0]), int(r[1])]
    return None


class _TextOp(Op):
    COLUMN_TYPES = ("string",)
    PER_DOCUMENT = False
    ROW_TYPE = Sequence[int]

    @property
    def split(self) -> TextSplit:
        return TextSplit(self.options["separator"], tuple(self.options["ngram_range"]))

    def _request(self):
        return Tokens(self.split, per_document=self.PER_DOCUMENT)

    def requests(self):
        return (self._request(),)

    def results(self, stats):
        return {f"{self.output}/vocabulary": vocabulary_lines(stats[self._request()], self.options.get("top_k"))}

    def tft_graph(self, x):
        import tensorflow as tf
        import tensorflow_transform as tft

        with tf.name_scope(self.output):
            grams = self.split.tf_grams(x, self.PER_DOCUMENT)
        return {self.output: tft.compute_and_apply_vocabulary(
            grams, top_k=self.options["top_k"], num_oov_buckets=self.options["num_oov_buckets"],
            vocab_filename=self.output, store_frequency=True, name=analyzer_name(self.output),
        )}

    def graph(self, x, constants):
        import tensorflow as tf

        with tf.name_scope(self.output):
            grams = self.split.tf_grams(x, self.PER_DOCUMENT)
        return {self.output: apply_vocabulary(grams, constants[f"{self.output}/vocabulary"],
                                              self.options["num_oov_buckets"], self.output)}

    @classmethod
    def check_options(cls, options):
        return check_vocabulary_options(options) or _check_ngram_range(options)

    def describe(self, numeric, vocabulary):
        entry = dict(vocabulary(self.output) or {})
        entry["num_oov_buckets"] = self.options.get("num_oov_buckets", 1)
        entry["ngram_range"] = self.options["ngram_range"]
        return entry

    def model_hints(self, vocabulary):
        info = vocabulary(self.output)
        if not info:
            return {}
        return {self.output: ("bag", info["vocabulary_size"] + self.options["num_oov_buckets"], None)}


_TEXT_OPTIONS = {
    "ngram_range": (list, [1, 1]),
    "separator": (str, " "),
    "top_k": (int, None),
    "num_oov_buckets": (int, 1),
}


class NGrams(_TextOp):
    """Vocabulary ids of every n-gram of the text (a list per row)."""

    TYPE = "ngrams"
    OPTIONS = _TEXT_OPTIONS


class BagOfWords(_TextOp):
    """Vocabulary ids of the distinct n-grams of the text; the vocabulary
    ranks n-grams by the number of rows holding them."""

    TYPE = "bag_of_words"
    OPTIONS = _TEXT_OPTIONS
    PER_DOCUMENT = True


class TfIdf(_TextOp):
    """Two outputs, `<name>_index` (vocabulary ids of the distinct n-grams,
    OOV = the vocabulary's size) and `<name>_weight` (term frequency in the
    row times TFT's smoothed idf, 1 + log((rows + 1) / (rows with the id + 1)))."""

    TYPE = "tfidf"
    OPTIONS = {"ngram_range": (list, [1, 1]), "separator": (str, " "), "vocab_size": (int, REQUIRED)}

    @classmethod
    def check_options(cls, options):
        if options["vocab_size"] < 1:
            return f"field 'vocab_size' must be >= 1; got {options['vocab_size']}."
        return _check_ngram_range(options)

    def output_names(self):
        return [self.output + "_index", self.output + "_weight"]

    def row_fields(self, stored_type):
        return [(self.output + "_index", Sequence[int]), (self.output + "_weight", Sequence[float])]

    def _request(self):
        return Tokens(self.split, documents=True)

    def vocabulary_tokens(self, stats) -> list:
        """The escaped tokens of the vocabulary, in id order."""
        return [t for _, t, _ in ranked_tokens(stats[self._request()], self.options["vocab_size"])]

    def results(self, stats):
        size = self.options["vocab_size"]
        ranked = ranked_tokens(stats[self._request()], size)
        lines = [b"%d %s" % (c, t) for c, t, _ in ranked] or [empty_vocabulary_line()]
        df = np.zeros((1, size + 1), np.float64)
        df[0, : len(ranked)] = [d for _, _, d in ranked]
        # The OOV id is the vocabulary's size (tft.tfidf folds ids mod size + 1).
        df[0, len(ranked) if ranked else 1] += stats.get((OOV_DOCUMENTS, self.output), 0)
        return {
            f"{self.output}/vocabulary": lines,
            f"{self.output}/df": df,
            f"{self.output}/documents": np.int64(stats[ROWS]),
        }

    def rows_with_oov(self, values: pa.Array, vocabulary: set) -> int:
        """How many of these present texts hold an n-gram outside `vocabulary`
        (escaped tokens, as `vocabulary_tokens` gives them)."""
        if not len(values):
            return 0
        grams, rows = self.split.grams(values)
        escaped = pc.replace_substring(grams, " ", SPACE.decode())
        outside = pc.invert(pc.is_in(escaped, value_set=pa.array(sorted(vocabulary), pa.large_binary())))
        bad_rows = np.asarray(rows)[np.asarray(outside.to_numpy(zero_copy_only=False), bool)]
        return int(np.unique(bad_rows).size)

    def tft_graph(self, x):
        import tensorflow as tf
        import tensorflow_transform as tft

        size = self.options["vocab_size"]
        with tf.name_scope(self.output):
            grams = self.split.tf_grams(x)
        ids = tft.compute_and_apply_vocabulary(grams, top_k=size, num_oov_buckets=1, vocab_filename=self.output,
                                               store_frequency=True, name=analyzer_name(self.output))
        index, weight = tft.tfidf(ids, size + 1, name=analyzer_name(f"{self.output}_tfidf"))
        return {self.output + "_index": index, self.output + "_weight": weight}

    def graph(self, x, constants):
        import tensorflow as tf
        from tensorflow_transform import mappers as tft_mappers
        from tensorflow_transform import tf_utils

        size = self.options["vocab_size"]
        with tf.name_scope(self.output):
            grams = self.split.tf_grams(x)
        ids = apply_vocabulary(grams, constants[f"{self.output}/vocabulary"], 1, self.output)
        # tft.tfidf's own steps, its two sums replaced by the one pass's results
        # (TFT has no public "apply" half of tfidf).
        with tf.name_scope(f"{self.output}_tfidf"):
            cleaned = tf_utils.to_vocab_range(ids, size + 1)
            frequencies = tft_mappers._to_term_frequency(cleaned, size + 1)  # pylint: disable=protected-access
            tfidfs = tft_mappers._to_tfidf(  # pylint: disable=protected-access
                frequencies, constants[f"{self.output}/df"], constants[f"{self.output}/documents"], True
            )
            index, weight = tft_mappers._split_tfidfs_to_outputs(tfidfs)  # pylint: disable=protected-access
        return {self.output + "_index": index, self.output + "_weight": weight}

    def describe(self, numeric, vocabulary):
        entry = dict(vocabulary(self.output) or {})
        entry["num_oov_buckets"] = 1
        entry["ngram_range"] = self.options["ngram_range"]
        return entry

    def model_hints(self, vocabulary):
        size = self.options["vocab_size"] + 1
        return {self.output + "_index": ("bag", size, self.output + "_weight"),
                self.output + "_weight": ("bag_weights", 0, None)}
