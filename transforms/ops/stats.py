"""The statistics ops ask for, and their vectorised, mergeable accumulators.

A request names a statistic of one column's present values; the one-pass
combine (`featurebridge.transforms.one_pass`) keeps one accumulator per
(column, request), feeds it every RecordBatch, merges accumulators across
bundles and extracts the value. Missing values never reach an accumulator:
extraction adds ``missing`` copies of the column's fill value afterwards, so
one pass serves every fill policy (the fill itself is extracted first, from
the same accumulators without copies).

- `Moments`: count, mean and M2 (float64, Chan et al.'s parallel update) and
  the float32 min/max, as TFT's mean/var/min/max analyzers see them.
- `Quantiles`: TFT's own C++ quantile sketch (`tft.analyzers.QuantilesCombiner`).
- `Tokens`: token counts with pyarrow (value_counts, merged by group_by):
  whole values, or the n-grams of a text (`featurebridge.transforms.ops.text_split`),
  counted per occurrence or per document, optionally with document counts.

An empty column (no present value) extracts TFT's defaults: 0 for moments,
the fill alone, an empty vocabulary (TFT's stand-in token).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurebridge.transforms.ops.text_split import TextSplit

__all__ = ["Moments", "Quantiles", "Tokens", "TokenTable"]


@dataclasses.dataclass(frozen=True)
class Moments:
    """count, mean, variance (population), min and max of the float32 values."""

    def create(self):
        return np.array([0.0, 0.0, 0.0, np.inf, -np.inf])

    def add(self, acc, values: np.ndarray):
        if not values.size:
            return acc
        as64 = values.astype(np.float64, copy=False)
        mean = as64.mean()
        batch = np.array([as64.size, mean, ((as64 - mean) ** 2).sum(), values.min(), values.max()], np.float64)
        return _merge_moments(acc, batch)

    def merge(self, a, b):
        return _merge_moments(a, b)

    def extract(self, acc, fill: Optional[float], missing: int):
        """(count, mean, var, min, max) of the present values plus `missing` copies of `fill`."""
        if missing and fill is not None:
            f32 = float(np.float32(fill))
            acc = _merge_moments(acc, np.array([missing, float(fill), 0.0, f32, f32]))
        count, mean, m2, low, high = acc
        return count, mean if count else 0.0, m2 / count if count else 0.0, low, high


def _merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = a[0] + b[0]
    if b[0] == 0:
        return a
    if a[0] == 0:
        return b.copy()
    delta = b[1] - a[1]
    return np.array([n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n,
                     min(a[3], b[3]), max(a[4], b[4])])


@dataclasses.dataclass(frozen=True)
class Quantiles:
    """The boundaries of `num_buckets` quantile buckets (TFT's sketch, `epsilon` bound)."""

    num_buckets: int
    epsilon: float

    def _combiner(self):
        from tensorflow_transform import analyzers as tft_analyzers  # TensorFlow: only on workers

        return tft_analyzers.QuantilesCombiner(
            self.num_buckets, self.epsilon, np.float32, has_weights=False,
            output_shape=[1, self.num_buckets - 1], feature_shape=[],
        )

    def create(self):
        return self._combiner().create_accumulator()

    def add(self, acc, values: np.ndarray):
        if values.size:
            acc = self._combiner().add_input(acc, [values.astype(np.float32, copy=False)])
        return acc

    def merge(self, a, b):
        return self._combiner().merge_accumulators([a, b])

    def extract(self, acc, fill: Optional[float], missing: int) -> np.ndarray:
        """The boundaries ([1, num_buckets - 1]); `acc` stays usable (a copy is finalized)."""
        combiner = self._combiner()
        acc = combiner.merge_accumulators([combiner.create_accumulator(), acc])
        if missing and fill is not None:
            acc = combiner.add_input(acc, [np.full(missing, fill, np.float32)])
        return combiner.extract_output(acc)[0]


@dataclasses.dataclass(frozen=True)
class TokenTable:
    """Extracted token counts: `tokens` (bytes), `counts`, `docs` (None unless asked)."""

    tokens: List[bytes]
    counts: np.ndarray
    docs: Optional[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Tokens:
    """How often each token occurs in a column.

    Attributes:
      split: None to count whole values, else how a text splits into n-grams.
      per_document: count a token once per row (TFT's bag_of_words), not per occurrence.
      documents: also count the rows each token occurs in (tf-idf's document frequency).
      text: how a number is written as a token: "decimal" (tf.strings.as_string
        of an int) or "printf" (of a float, "%f"); strings are taken as they are.
    """

    split: Optional[TextSplit] = None
    per_document: bool = False
    documents: bool = False
    text: str = "decimal"

    def create(self):
        return []

    def add(self, acc, values: pa.Array):
        if not len(values):
            return acc
        if self.split is None:
            counted = pc.value_counts(values).flatten()
            table = pa.table({"token": counted[0], "count": counted[1]})
            if self.documents:
                table = table.append_column("docs", counted[1])
        else:
            grams, docs = self.split.grams(values)
            table = _count_grams(grams, docs, self.per_document, self.documents)
        acc.append(table)
        if len(acc) >= 16:
            acc = [_sum_tables(acc)]
        return acc

    def merge(self, a, b):
        return [_sum_tables(a + b)] if a or b else []

    def extract(self, acc, fill, missing: int) -> TokenTable:
        """Counts as text tokens, with `missing` rows of `fill` added; tokens
        that read the same once written as text are one token."""
        columns = ["token", "count"] + (["docs"] if self.documents else [])
        table = _sum_tables(acc) if acc else None
        token_type = table.schema.field("token").type if table is not None else None
        if token_type is not None and not (pa.types.is_binary(token_type) or pa.types.is_large_binary(token_type)):
            table = table.set_column(0, "token", _as_text(table.column("token").combine_chunks(), self.text))
        if missing and fill is not None:
            table = _add_fill(table, fill, missing, self, columns)
        if table is None or table.num_rows == 0:
            return TokenTable([], np.zeros(0, np.int64), np.zeros(0, np.int64) if self.documents else None)
        table = _sum_tables([table.cast(pa.schema([pa.field(c, pa.large_binary() if c == "token" else pa.int64()) for c in columns]))])
        return TokenTable(
            table.column("token").to_pylist(),
            table.column("count").to_numpy(),
            table.column("docs").to_numpy() if self.documents else None,
        )


def _count_grams(grams: pa.Array, docs: np.ndarray, per_document: bool, documents: bool) -> pa.Table:
    """Counts of n-grams (per occurrence, or per row with `per_document`),
    with the rows holding each (`documents`): the n-grams dictionary-encoded,
    the distinct (row, n-gram) pairs found by sorting int64 keys."""
    encoded = pc.dictionary_encode(grams)
    ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    distinct = len(encoded.dictionary)
    table = {"token": encoded.dictionary}
    if per_document or documents:
        pairs = np.unique(np.asarray(docs, np.int64) * distinct + ids)
        in_docs = np.bincount(pairs % distinct, minlength=distinct).astype(np.int64)
    if per_document:
        table["count"] = in_docs
    else:
        table["count"] = np.bincount(ids, minlength=distinct).astype(np.int64)
    if documents:
        table["docs"] = in_docs
    return pa.table(table)


def _sum_tables(tables: List[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    columns = tables[0].column_names
    merged = pa.concat_tables(tables, promote_options="permissive").group_by("token").aggregate(
        [(c, "sum") for c in columns[1:]]
    )
    return merged.select([f"{c}_sum" for c in columns[1:]] + ["token"]).rename_columns(columns[1:] + ["token"]).select(columns)


def _as_text(values: pa.Array, style: str) -> pa.Array:
    """Numbers as tf.strings.as_string writes them: ints in decimal, floats as "%f"."""
    if pa.types.is_floating(values.type):
        if style != "printf":
            raise ValueError(f"a float token needs text style 'printf'; got {style!r}")
        return pa.array([b"%f" % v for v in values.to_numpy(zero_copy_only=False).astype(np.float64)], pa.large_binary())
    return pc.cast(pc.cast(values, pa.large_string()), pa.large_binary())


def _add_fill(table: Optional[pa.Table], fill, missing: int, request: Tokens, columns: List[str]) -> pa.Table:
    """`missing` rows whose value is `fill`, counted as `request` counts them."""
    if isinstance(fill, (bytes, str)):
        one = pa.array([fill.encode() if isinstance(fill, str) else fill], pa.large_binary())
    elif request.text == "printf":
        one = _as_text(pa.array([fill], pa.float32()), "printf")
    else:
        one = _as_text(pa.array([int(fill)], pa.int64()), "decimal")
    if request.split is None:
        extra = {"token": one, "count": pa.array([missing], pa.int64())}
        if request.documents:
            extra["docs"] = pa.array([missing], pa.int64())
        extra_table = pa.table(extra)
    else:
        grams, docs = request.split.grams(one)
        extra_table = _count_grams(grams, docs, request.per_document, request.documents)
        scaled = [extra_table.column("token")] + [pc.multiply(extra_table.column(c), missing) for c in columns[1:]]
        extra_table = pa.table(dict(zip(columns, scaled)))
    if extra_table.num_rows == 0:
        return table
    schema = pa.schema([pa.field(c, pa.large_binary() if c == "token" else pa.int64()) for c in columns])
    parts = [extra_table.cast(schema)] + ([table.cast(schema)] if table is not None else [])
    return _sum_tables(parts)
