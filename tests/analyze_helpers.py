"""One shared helper for analyze-and-check tests: run the real analyze job
(real TFT, real DirectRunner) and load everything it wrote."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class AnalyzedRun:
    output_dir: str
    manifest: dict
    constants: dict
    transformed: Dict[str, list]
    rejected: List[dict]

    def tft_output(self):
        import tensorflow_transform as tft

        return tft.TFTransformOutput(self.output_dir)


def read_transformed(output_dir: str) -> Dict[str, list]:
    """All transformed examples, as {feature: [value per example]} (dense
    features as scalars, sparse ones as lists)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(output_dir).transformed_feature_spec()
    files = sorted(glob.glob(os.path.join(output_dir, "transformed", "*.tfrecord.gz")))
    out: Dict[str, list] = {k: [] for k in spec}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        for k, v in parsed.items():
            if isinstance(v, tf.SparseTensor):
                out[k].append(v.values.numpy().tolist())
            else:
                out[k].append(v.numpy().item())
    return out


def analyze_and_check(
    tmp_dir: str,
    spec_text: str,
    csv_text: Optional[str] = None,
    input_path: Optional[str] = None,
    extra_argv: Sequence[str] = (),
    name: str = "out",
) -> AnalyzedRun:
    """Writes the spec (and CSV), runs `featurebridge.pipelines.analyze.run`, loads the results."""
    from featurebridge.pipelines import analyze

    spec_path = os.path.join(tmp_dir, f"{name}.spec.yaml")
    with open(spec_path, "w") as f:
        f.write(spec_text)
    if input_path is None:
        input_path = os.path.join(tmp_dir, f"{name}.csv")
        with open(input_path, "w") as f:
            f.write(csv_text)
    output_dir = os.path.join(tmp_dir, name)
    manifest = analyze.run(
        ["--input", input_path, "--spec", spec_path, "--output", output_dir, *extra_argv]
    )
    with open(os.path.join(output_dir, "constants.json")) as f:
        constants = json.load(f)
    rejected = []
    for path in sorted(glob.glob(os.path.join(output_dir, "rejected", "*.jsonl"))):
        with open(path) as f:
            rejected += [json.loads(line) for line in f if line.strip()]
    return AnalyzedRun(output_dir, manifest, constants, read_transformed(output_dir), rejected)


def quantile_rank_error(values: np.ndarray, boundaries: Sequence[float], num_buckets: int) -> float:
    """The largest distance, as a fraction of rows, between each boundary's
    rank in `values` and its ideal rank i/num_buckets."""
    values = np.sort(values)
    n = len(values)
    worst = 0.0
    for i, b in enumerate(boundaries, start=1):
        lo = np.searchsorted(values, b, side="left") / n
        hi = np.searchsorted(values, b, side="right") / n
        target = i / num_buckets
        err = 0.0 if lo <= target <= hi else min(abs(lo - target), abs(hi - target))
        worst = max(worst, err)
    return worst
