"""TFT's text vocabulary files, from extracted token counts, and their lookup.

A vocabulary lists tokens by count descending, then token bytes descending
(TFT's order); empty tokens and tokens holding a newline are left out (as
TFT's vocabulary analyzer leaves them out; they map to the OOV bucket). With
counts, a line is "count token" and spaces inside tokens are written
``__SPACE__`` (TFT's `store_frequency` format, escaped before counting, so two
tokens that escape alike are one). An empty vocabulary holds TFT's stand-in
line, so the lookup table still builds.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurebridge.transforms.ops.stats import TokenTable

__all__ = ["SPACE", "apply_vocabulary", "empty_vocabulary_line", "ranked_tokens", "vocabulary_lines"]

SPACE = b"__SPACE__"
# TFT leaves these tokens out of a vocabulary (analyzers._EMPTY_STRING_OR_NEWLINE_CHARS_REGEX).
_DROPPED_REGEX = r"^$|[\n\r]"


def empty_vocabulary_line(with_counts: bool = True) -> bytes:
    """TFT's stand-in entry of an empty vocabulary (as a "count token" line with counts)."""
    import tensorflow as tf
    from tensorflow_transform import analyzers as tft_analyzers

    count, token = tft_analyzers.get_empy_vocabulary_dummy_value(tf.string)
    token = token if isinstance(token, bytes) else str(token).encode()
    return b"%d %s" % (max(int(count), 1), token) if with_counts else token


def ranked_tokens(table: TokenTable, top_k: Optional[int] = None, frequency_threshold: Optional[int] = None,
                  escape_spaces: bool = True) -> List[Tuple[int, bytes, int]]:
    """(count, token, documents) of the vocabulary's entries, in TFT's order
    (documents 0 when `table` has no document counts). Empty: [] (no stand-in).
    Sorted by Arrow (byte order of tokens, as TFT's), not in Python."""
    if not table.tokens:
        return []
    tokens = pa.array(table.tokens, pa.large_binary())
    docs = table.docs if table.docs is not None else np.zeros(len(table.tokens), np.int64)
    ranked = pa.table({"token": tokens, "count": np.asarray(table.counts, np.int64), "docs": np.asarray(docs, np.int64)})
    if escape_spaces and pc.any(pc.match_substring(tokens, " ")).as_py():
        escaped = pc.replace_substring(tokens, " ", SPACE.decode())
        ranked = ranked.set_column(0, "token", escaped).group_by("token").aggregate(
            [("count", "sum"), ("docs", "sum")]).rename_columns(["token", "count", "docs"])
    ranked = ranked.filter(pc.invert(pc.match_substring_regex(ranked.column("token"), _DROPPED_REGEX)))
    if frequency_threshold is not None and frequency_threshold > 1:
        ranked = ranked.filter(pc.greater_equal(ranked.column("count"), frequency_threshold))
    order = pc.sort_indices(ranked, sort_keys=[("count", "descending"), ("token", "descending")])
    if top_k is not None:
        order = order.slice(0, top_k)
    ranked = ranked.take(order)
    return list(zip(ranked.column("count").to_pylist(), ranked.column("token").to_pylist(),
                    ranked.column("docs").to_pylist()))


def vocabulary_lines(table: TokenTable, top_k: Optional[int] = None, frequency_threshold: Optional[int] = None,
                     with_counts: bool = True) -> List[bytes]:
    """The lines of the vocabulary file TFT writes for these counts."""
    ranked = ranked_tokens(table, top_k, frequency_threshold, escape_spaces=with_counts)
    if not ranked:
        return [empty_vocabulary_line(with_counts)]
    return [b"%d %s" % (c, t) for c, t, _ in ranked] if with_counts else [t for _, t, _ in ranked]


def apply_vocabulary(x, vocabulary_file, num_oov_buckets: int, name: str, default_value: int = -1):
    """Token ids from a vocabulary stored WITH frequencies ("count token"
    lines), exactly as tft.compute_and_apply_vocabulary(store_frequency=True)
    maps them: same table, OOV hashing, space escaping and schema annotation.

    The one private TFT call kept on purpose: TFT's public `tft.apply_vocabulary`
    has no `store_frequency` argument, so it would read a whole "count token"
    line as the key; its `lookup_fn` hook would mean re-implementing TFT's
    table and annotations. The files keep frequencies because plain TFT writes
    them so (identical files, see tests/test_one_pass_oracle.py) and
    constants.json reads the counts.
    """
    from tensorflow_transform import mappers as tft_mappers
    from tensorflow_transform import tf_utils

    return tft_mappers._apply_vocabulary_internal(  # pylint: disable=protected-access
        tf_utils.maybe_format_vocabulary_input(x),
        vocabulary_file,
        default_value,
        num_oov_buckets,
        lookup_fn=None,
        store_frequency=True,
        file_format="text",
        name=name,
    )
