"""How a free-text value becomes n-grams, in Arrow and in TensorFlow, the same way.

The TF graph (`TextSplit.tf_grams`) lower-cases ASCII letters, then either
treats everything but letters, digits, "_" and white space as a separator and
splits on white space, or splits on the spec's separator; then joins
neighbouring tokens into n-grams (TFT's `tft.ngrams` / `tft.bag_of_words`).
`TextSplit.grams` does the same over an Arrow array for the one-pass
analyzer, with the same regular expression engine (RE2) on both sides, so the
counts it gathers are the counts TFT's analyzers would see.

An empty text has no token with the white-space split, and one empty token
with an explicit separator (as `tf.strings.split` gives).
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["TextSplit"]

# RE2 on both sides: \w is [0-9A-Za-z_], \s is [\t\n\f\r ].
_PUNCTUATION = r"[^\w\s]"


@dataclasses.dataclass(frozen=True)
class TextSplit:
    """A text split into tokens by `separator`, then into n-grams of
    `ngram_range` (inclusive) tokens joined by `joiner`."""

    separator: str
    ngram_range: Tuple[int, int]

    @property
    def joiner(self) -> str:
        return " " if self.separator == " " else self.separator

    # --- Arrow --------------------------------------------------------------------

    def tokens(self, values: pa.Array) -> Tuple[pa.Array, np.ndarray]:
        """(flat tokens as large_binary, the row index of each token)."""
        text = pc.ascii_lower(pc.cast(values, pa.large_string()))
        if self.separator == " ":
            lists = pc.ascii_split_whitespace(pc.replace_substring_regex(text, _PUNCTUATION, " "))
        else:
            lists = pc.split_pattern(text, self.separator)
        flat = pc.list_flatten(lists)
        rows = pc.list_parent_indices(lists)
        if self.separator == " ":  # leading and trailing white space give empty tokens
            keep = pc.not_equal(pc.utf8_length(flat), 0)
            flat, rows = pc.filter(flat, keep), pc.filter(rows, keep)
        return pc.cast(flat, pa.large_binary()), rows.to_numpy(zero_copy_only=False)

    def grams(self, values: pa.Array) -> Tuple[pa.Array, np.ndarray]:
        """(flat n-grams as large_binary, the row index of each)."""
        flat, rows = self.tokens(values)
        low, high = self.ngram_range
        parts, part_rows = [], []
        n_tokens = len(flat)
        for n in range(low, high + 1):
            if n > n_tokens:
                break
            starts = n_tokens - n + 1
            same_row = rows[:starts] == rows[n - 1:]
            if n == 1:
                parts.append(flat)
                part_rows.append(rows)
                continue
            pieces = [flat.slice(k, starts) for k in range(n)]
            joined = pc.binary_join_element_wise(*pieces, pa.scalar(self.joiner.encode(), pa.large_binary()))
            mask = pa.array(same_row)
            parts.append(pc.filter(joined, mask))
            part_rows.append(rows[:starts][same_row])
        if not parts:
            return pa.array([], pa.large_binary()), np.zeros(0, np.int64)
        return pa.concat_arrays([p.cast(pa.large_binary()) for p in parts]), np.concatenate(part_rows)

    # --- TensorFlow ---------------------------------------------------------------

    def tf_tokens(self, text):
        """[batch] strings -> [batch, None] SparseTensor of tokens."""
        import tensorflow as tf

        lowered = tf.strings.lower(text)
        if self.separator == " ":
            cleaned = tf.strings.regex_replace(lowered, _PUNCTUATION, " ")
            return tf.strings.split(cleaned).to_sparse()
        return tf.strings.split(lowered, sep=self.separator).to_sparse()

    def tf_grams(self, text, per_document: bool = False):
        """[batch] strings -> SparseTensor of n-grams (unique per row with `per_document`)."""
        import tensorflow_transform as tft

        tokens = self.tf_tokens(text)
        if per_document:
            return tft.bag_of_words(tokens, tuple(self.ngram_range), separator=self.joiner)
        return tft.ngrams(tokens, tuple(self.ngram_range), separator=self.joiner)
