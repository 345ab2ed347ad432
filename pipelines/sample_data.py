"""A seeded generator of realistic sample data, and the feature spec that fits it.

The data looks like a web shop's sessions: numbers with missing values, a
handful of categoricals whose cardinality ranges from 10 to 100,000 with a
skewed (Zipf-like) frequency, a free-text column, an id key, and a binary
label that depends on several of them, so a model has something to learn.
The same seed always gives the same files.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List

import numpy as np

__all__ = ["SAMPLE_SPEC", "generate_rows", "write_sample_data"]

# The spec that matches `generate_rows`. Every transform family appears once.
SAMPLE_SPEC = """\
key: session_id
label: {column: purchased, kind: binary}
columns:
  - name: session_id
    type: string
  - name: purchased
    type: int
  - name: age
    type: float
    missing: mean
    transforms: [zscore, {type: bucketize, num_buckets: 8}]
  - name: basket_value
    type: float
    missing: median
    transforms: [log1p, {type: clip, min: 0, max: 500}]
  - name: pages_viewed
    type: int
    missing: {constant: 0}
    transforms: [scale_0_1]
  - name: device
    type: string
    missing: most_frequent
    transforms: [{type: vocabulary, num_oov_buckets: 1}]
  - name: country
    type: string
    missing: {constant: "unknown"}
    transforms: [{type: vocabulary, top_k: 50, num_oov_buckets: 2}]
  - name: city
    type: string
    missing: {constant: "unknown"}
    transforms: [{type: vocabulary, top_k: 1000, num_oov_buckets: 5}]
  - name: product_id
    type: string
    missing: {constant: "none"}
    transforms: [{type: hash, hash_buckets: 2000}]
  - name: review
    type: string
    missing: {constant: ""}
    transforms: [{type: tfidf, vocab_size: 200}]
crosses:
  - {columns: [device, country], hash_buckets: 200}
"""

_DEVICES = ["mobile", "desktop", "tablet", "tv", "watch", "console", "car", "kiosk", "bot", "other"]
_GOOD_WORDS = ["great", "love", "perfect", "fast", "excellent", "recommend", "happy", "quality"]
_BAD_WORDS = ["broken", "slow", "refund", "terrible", "late", "cheap", "never", "awful"]
_NEUTRAL_WORDS = [
    "the", "item", "arrived", "box", "size", "color", "price", "order", "was", "and",
    "it", "a", "with", "for", "delivery", "product", "shop", "again", "this", "my",
]


def _zipf_ids(rng: np.random.Generator, n: int, cardinality: int, exponent: float) -> np.ndarray:
    """`n` draws from 0..cardinality-1 with P(k) ~ 1 / (k + 1) ** exponent."""
    weights = 1.0 / np.arange(1, cardinality + 1) ** exponent
    return rng.choice(cardinality, size=n, p=weights / weights.sum())


def generate_rows(num_rows: int, seed: int = 7) -> Dict[str, List[object]]:
    """Generates `num_rows` sessions as columns of Python values (None = missing).

    Args:
      num_rows: how many rows; 0 gives empty columns.
      seed: the random seed; the same seed gives the same rows.

    Returns:
      {column name: list of values}, columns as in `SAMPLE_SPEC`.
    """
    rng = np.random.default_rng(seed)
    n = num_rows
    age = rng.normal(38, 12, n).clip(16, 90).round(1)
    basket = rng.lognormal(3.5, 1.0, n).round(2)
    pages = rng.poisson(6, n)
    device_idx = _zipf_ids(rng, n, len(_DEVICES), 1.5)
    country_idx = _zipf_ids(rng, n, 60, 1.2)
    city_idx = _zipf_ids(rng, n, 5_000, 1.05)
    product_idx = _zipf_ids(rng, n, 100_000, 1.0)
    # Some sentiment drives both the review text and the label.
    sentiment = rng.normal(0, 1, n)

    logit = (
        -1.0
        + 1.2 * sentiment
        + 0.35 * (pages - 6) / 2.5
        + 0.5 * np.log1p(basket) - 0.5 * 3.5
        - 0.025 * (age - 38)
        + np.where(device_idx == 1, 0.6, 0.0)
        + np.where(country_idx % 3 == 0, 0.5, -0.2)
        + np.where(city_idx % 7 == 0, 0.8, 0.0)
        + np.where(product_idx % 5 == 0, 0.4, 0.0)
    )
    purchased = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    reviews = []
    for s in sentiment:
        length = int(rng.integers(3, 12))
        p_good = 1 / (1 + np.exp(-3 * s))
        words = []
        for _ in range(length):
            r = rng.random()
            if r < 0.5:
                pool = _GOOD_WORDS if rng.random() < p_good else _BAD_WORDS
            else:
                pool = _NEUTRAL_WORDS
            words.append(pool[int(rng.integers(len(pool)))])
        text = " ".join(words)
        reviews.append(text[0].upper() + text[1:] + ("!" if s > 1 else "."))

    def with_missing(values, rate):
        mask = rng.random(n) < rate
        return [None if m else v for v, m in zip(values, mask)]

    return {
        "session_id": [f"s{seed:03d}-{i:07d}" for i in range(n)],
        "purchased": purchased.tolist(),
        "age": with_missing(age.tolist(), 0.08),
        "basket_value": with_missing(basket.tolist(), 0.05),
        "pages_viewed": with_missing(pages.tolist(), 0.03),
        "device": with_missing([_DEVICES[i] for i in device_idx], 0.02),
        "country": with_missing([f"C{i:02d}" for i in country_idx], 0.04),
        "city": with_missing([f"city_{i:04d}" for i in city_idx], 0.06),
        "product_id": with_missing([f"p{i:06d}" for i in product_idx], 0.01),
        "review": with_missing(reviews, 0.10),
    }


# How a dirty row is broken, in turn; each is a reason analyze must reject it for.
_DIRTY_KINDS = (
    ("age", "forty"),          # not a valid float ("n/a" would be a null marker: missing)
    ("purchased", ""),         # missing label: the spec rejects the row
    ("basket_value", "-3.5"),  # log1p needs values greater than -1
    (None, None),              # a truncated line: too few fields
    ("pages_viewed", "2.5"),   # not a valid int
)


def write_sample_data(
    output_dir: str, num_rows: int, num_files: int = 4, seed: int = 7, dirty_rows: int = 0
) -> Dict[str, object]:
    """Writes `num_rows` rows as `num_files` CSV files plus spec.yaml.

    Rows are dealt to files in order, so the last file can serve as a
    held-out part. Missing values are empty cells. `dirty_rows` rows, at
    seeded positions, are broken the way real exports break (text in a number
    column, a missing label, an impossible value, a truncated line), so the
    rejected-rows path has something to show.

    Args:
      output_dir: created if needed; files inside it are overwritten.
      num_rows: total rows (>= num_files).
      num_files: how many CSV files to split them over.
      seed: the random seed.
      dirty_rows: how many rows to break (0 <= dirty_rows <= num_rows).

    Returns:
      {"files": [csv paths], "spec": spec path, "rows": num_rows,
       "dirty_rows_per_file": [count per file]}.

    Raises:
      ValueError: if num_rows < num_files or num_files < 1.
    """
    if num_files < 1 or num_rows < num_files:
        raise ValueError(
            f"Need at least one row per file; got num_rows={num_rows}, num_files={num_files}. "
            "Ask for more rows (--rows)."
        )
    if not 0 <= dirty_rows <= num_rows:
        raise ValueError(f"dirty_rows must be between 0 and num_rows ({num_rows}); got {dirty_rows}.")
    os.makedirs(output_dir, exist_ok=True)
    data = generate_rows(num_rows, seed)
    names = list(data)
    dirty_at = np.random.default_rng(seed + 1).choice(num_rows, size=dirty_rows, replace=False)
    dirty = {int(i): _DIRTY_KINDS[k % len(_DIRTY_KINDS)] for k, i in enumerate(sorted(dirty_at))}
    bounds = np.linspace(0, num_rows, num_files + 1).astype(int)
    files, dirty_per_file = [], []
    for part in range(num_files):
        path = os.path.join(output_dir, f"sessions-{part:02d}.csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            for i in range(bounds[part], bounds[part + 1]):
                row = ["" if data[c][i] is None else data[c][i] for c in names]
                if i in dirty:
                    column, value = dirty[i]
                    if column is None:
                        row = row[:3]
                    else:
                        row[names.index(column)] = value
                writer.writerow(row)
        files.append(path)
        dirty_per_file.append(sum(1 for i in dirty if bounds[part] <= i < bounds[part + 1]))
    spec_path = os.path.join(output_dir, "spec.yaml")
    with open(spec_path, "w", encoding="utf-8") as f:
        f.write(SAMPLE_SPEC)
    return {"files": files, "spec": spec_path, "rows": num_rows, "dirty_rows_per_file": dirty_per_file}
