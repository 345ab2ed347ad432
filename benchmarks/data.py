"""Seeded generators for the two benchmark datasets, plus their feature specs.

The main dataset (issue 6; any row count, written as Parquet and CSV):
  f0..f7   float, standard-normal-ish with per-column offset/scale, 5% missing
           -> mean fill + z-score
  s10, s1k, s50k, s200k   strings with cardinality 10 / 1k / 50k / 200k, Zipf-like
           -> vocabulary top 10k + 1 OOV bucket
  q        float (log-normal) -> 10 quantile buckets

The text dataset (issue 14):
  text     free text, 1 + Poisson(9) words a row (10 on average) drawn from a
           Zipf-like vocabulary of 50k made-up words, a period at the end,
           5% missing -> constant "" fill + tf-idf over the top 10k words
  x0       float, 5% missing -> mean fill + z-score + 10 quantile buckets
  x1       float (log-normal), 5% missing -> mean fill + z-score
  topic, user   strings with cardinality 1k / 50k, Zipf-like
           -> vocabulary top 10k + 1 OOV bucket

    python -m benchmarks.data --rows 200000 [--text] --out benchmarks/data
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, Tuple

import numpy as np
import pyarrow as pa

__all__ = [
    "FLOAT_COLUMNS",
    "QUANTILE_COLUMN",
    "SPEC_YAML",
    "STRING_COLUMNS",
    "TEXT_SPEC_YAML",
    "generate_table",
    "generate_text_table",
    "write_dataset",
    "write_text_dataset",
]

FLOAT_COLUMNS = [f"f{i}" for i in range(8)]
STRING_COLUMNS = {"s10": 10, "s1k": 1_000, "s50k": 50_000, "s200k": 200_000}
QUANTILE_COLUMN = "q"
MISSING_FRACTION = 0.05
TOP_K = 10_000
NUM_BUCKETS = 10
ZIPF_EXPONENT = 1.1

SPEC_YAML = "columns:\n" + "".join(
    f"  - {{name: {c}, type: float, missing: mean, transforms: [zscore]}}\n" for c in FLOAT_COLUMNS
) + "".join(
    f"  - {{name: {c}, type: string, transforms: [{{type: vocabulary, top_k: {TOP_K}, num_oov_buckets: 1}}]}}\n"
    for c in STRING_COLUMNS
) + f"  - {{name: {QUANTILE_COLUMN}, type: float, transforms: [{{type: bucketize, num_buckets: {NUM_BUCKETS}}}]}}\n"


# The text dataset (issue 14).
TEXT_VOCABULARY = 50_000
TEXT_VOCAB_SIZE = 10_000
TEXT_MEAN_EXTRA_WORDS = 9
TEXT_STRING_COLUMNS = {"topic": 1_000, "user": 50_000}
# Two letters each, so a word decodes to one rank only (no two ranks share a word).
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "an", "er", "il", "on", "ul", "pe", "tr", "ge")

TEXT_SPEC_YAML = (
    "columns:\n"
    "  - {name: text, type: string, missing: {constant: \"\"}, "
    f"transforms: [{{type: tfidf, vocab_size: {TEXT_VOCAB_SIZE}}}]}}\n"
    "  - {name: x0, type: float, missing: mean, "
    f"transforms: [zscore, {{type: bucketize, num_buckets: {NUM_BUCKETS}}}]}}\n"
    "  - {name: x1, type: float, missing: mean, transforms: [zscore]}\n"
    + "".join(
        f"  - {{name: {c}, type: string, transforms: [{{type: vocabulary, top_k: {TOP_K}, num_oov_buckets: 1}}]}}\n"
        for c in TEXT_STRING_COLUMNS
    )
)


def _zipf_ranks(rng: np.random.Generator, n: int, cardinality: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, cardinality + 1, dtype=np.float64) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(n), side="right")


def _zipf_strings(rng: np.random.Generator, n: int, cardinality: int, prefix: str) -> pa.Array:
    ranks = _zipf_ranks(rng, n, cardinality)
    # Dictionary-encode then decode: the strings are built once per distinct value.
    dictionary = pa.array([f"{prefix}_{r}" for r in range(cardinality)], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(ranks.astype(np.int32)), dictionary).cast(pa.string())


def generate_table(rows: int, seed: int = 6) -> pa.Table:
    """The benchmark table with `rows` rows; the same seed gives the same data."""
    rng = np.random.default_rng(seed)
    columns: Dict[str, pa.Array] = {}
    for i, name in enumerate(FLOAT_COLUMNS):
        values = rng.normal(loc=10.0 * i, scale=1.0 + i, size=rows)
        missing = rng.random(rows) < MISSING_FRACTION
        columns[name] = pa.array(values, pa.float64(), mask=missing)
    for name, cardinality in STRING_COLUMNS.items():
        columns[name] = _zipf_strings(rng, rows, cardinality, name)
    columns[QUANTILE_COLUMN] = pa.array(rng.lognormal(mean=3.0, sigma=1.0, size=rows), pa.float64())
    return pa.table(columns)


def _word(rank: int) -> str:
    digits = []
    rank += len(_SYLLABLES)  # at least two syllables
    while rank:
        rank, d = divmod(rank, len(_SYLLABLES))
        digits.append(_SYLLABLES[d])
    return "".join(reversed(digits))


def generate_text_table(rows: int, seed: int = 14) -> pa.Table:
    """The text dataset with `rows` rows (see the module docstring); the same
    seed gives the same data. Every row has at least one word unless missing."""
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    lengths = 1 + rng.poisson(TEXT_MEAN_EXTRA_WORDS, size=rows)
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    words = pa.array([_word(r) for r in range(TEXT_VOCABULARY)], pa.string())
    ranks = _zipf_ranks(rng, int(offsets[-1]), TEXT_VOCABULARY)
    flat = pa.DictionaryArray.from_arrays(pa.array(ranks.astype(np.int32)), words).cast(pa.large_string())
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), flat)
    space, period, empty = (pa.scalar(v, pa.large_string()) for v in (" ", ".", ""))
    text = pc.binary_join_element_wise(pc.binary_join(lists, space), period, empty)
    missing = rng.random(rows) < MISSING_FRACTION
    columns: Dict[str, pa.Array] = {"text": pc.if_else(pa.array(missing), pa.scalar(None, pa.large_string()), text).cast(pa.string())}
    x0 = rng.normal(loc=5.0, scale=2.0, size=rows)
    columns["x0"] = pa.array(x0, pa.float64(), mask=rng.random(rows) < MISSING_FRACTION)
    x1 = rng.lognormal(mean=1.0, sigma=0.8, size=rows)
    columns["x1"] = pa.array(x1, pa.float64(), mask=rng.random(rows) < MISSING_FRACTION)
    for name, cardinality in TEXT_STRING_COLUMNS.items():
        columns[name] = _zipf_strings(rng, rows, cardinality, name)
    return pa.table(columns)


def _write(table_fn, rows: int, out_dir: str, stem: str, spec_name: str, spec_yaml: str) -> Tuple[str, str, str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    parquet = os.path.join(out_dir, f"{stem}-{rows}.parquet")
    csv = os.path.join(out_dir, f"{stem}-{rows}.csv")
    spec = os.path.join(out_dir, spec_name)
    if not (os.path.exists(parquet) and os.path.exists(csv)):
        table = table_fn(rows)
        pq.write_table(table, parquet + ".tmp", row_group_size=100_000)
        os.replace(parquet + ".tmp", parquet)
        pacsv.write_csv(table, csv + ".tmp")
        os.replace(csv + ".tmp", csv)
    with open(spec, "w", encoding="utf-8") as f:
        f.write(spec_yaml)
    return parquet, csv, spec


def write_dataset(rows: int, out_dir: str, seed: int = 6) -> Tuple[str, str, str]:
    """Writes data-<rows>.parquet, data-<rows>.csv and spec.yaml under out_dir
    (reusing data files that already exist). Returns (parquet, csv, spec) paths."""
    return _write(lambda n: generate_table(n, seed), rows, out_dir, "data", "spec.yaml", SPEC_YAML)


def write_text_dataset(rows: int, out_dir: str, seed: int = 14) -> Tuple[str, str, str]:
    """Writes text-<rows>.parquet, text-<rows>.csv and spec-text.yaml under
    out_dir (reusing data files that already exist). Returns (parquet, csv, spec)."""
    return _write(lambda n: generate_text_table(n, seed), rows, out_dir, "text", "spec-text.yaml", TEXT_SPEC_YAML)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data"))
    parser.add_argument("--text", action="store_true", help="the text dataset (tf-idf spec) instead of the main one")
    parser.add_argument("--seed", type=int, help="default 6 (main) or 14 (text)")
    args = parser.parse_args()
    if args.text:
        paths = write_text_dataset(args.rows, args.out, 14 if args.seed is None else args.seed)
    else:
        paths = write_dataset(args.rows, args.out, 6 if args.seed is None else args.seed)
    print("\n".join(paths))


if __name__ == "__main__":
    main()
