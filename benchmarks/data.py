"""Seeded generator for the issue-6 benchmark dataset, plus its feature spec.

Columns (any row count, written as Parquet and CSV):
  f0..f7   float, standard-normal-ish with per-column offset/scale, 5% missing
           -> mean fill + z-score
  s10, s1k, s50k, s200k   strings with cardinality 10 / 1k / 50k / 200k, Zipf-like
           -> vocabulary top 10k + 1 OOV bucket
  q        float (log-normal) -> 10 quantile buckets

    python -m benchmarks.data --rows 200000 --out benchmarks/data
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, Tuple

import numpy as np
import pyarrow as pa

__all__ = ["FLOAT_COLUMNS", "STRING_COLUMNS", "QUANTILE_COLUMN", "SPEC_YAML", "generate_table", "write_dataset"]

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


def _zipf_strings(rng: np.random.Generator, n: int, cardinality: int, prefix: str) -> pa.Array:
    weights = 1.0 / np.arange(1, cardinality + 1, dtype=np.float64) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n), side="right")
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


def write_dataset(rows: int, out_dir: str, seed: int = 6) -> Tuple[str, str, str]:
    """Writes data-<rows>.parquet, data-<rows>.csv and spec.yaml under out_dir
    (reusing files that already exist). Returns (parquet, csv, spec) paths."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    parquet = os.path.join(out_dir, f"data-{rows}.parquet")
    csv = os.path.join(out_dir, f"data-{rows}.csv")
    spec = os.path.join(out_dir, "spec.yaml")
    if not (os.path.exists(parquet) and os.path.exists(csv)):
        table = generate_table(rows, seed)
        pq.write_table(table, parquet + ".tmp", row_group_size=100_000)
        os.replace(parquet + ".tmp", parquet)
        pacsv.write_csv(table, csv + ".tmp")
        os.replace(csv + ".tmp", csv)
    with open(spec, "w", encoding="utf-8") as f:
        f.write(SPEC_YAML)
    return parquet, csv, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data"))
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    print("\n".join(write_dataset(args.rows, args.out, args.seed)))


if __name__ == "__main__":
    main()
