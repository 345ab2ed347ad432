"""Analyze-and-check helpers for the analyze tests, at two levels that share
their value handling and row comparison:

- `analyze_and_check`: the real analyze job end to end (real TFT, real
  DirectRunner, files in and out) and everything it wrote;
- `assert_analyze_and_transform_results`: one op in memory, in the style of
  TFT's ``tft_unit.assertAnalyzeAndTransformResults``: rows (dicts) in, TFT's
  ``AnalyzeAndTransformDataset`` on the DirectRunner, transformed rows
  compared with expected ones (floats within a tolerance, any row order).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "AnalyzedRun",
    "analyze_and_check",
    "analyze_and_transform_rows",
    "as_rows",
    "assert_analyze_and_transform_results",
    "assert_rows_close",
    "quantile_rank_error",
    "read_transformed",
]

REL_TOL = 1e-5
ABS_TOL = 1e-6


# ---------------------------------------------------------------- values and rows


def _plain(value: Any) -> Any:
    """A numpy value as plain Python: arrays as lists, 0-d arrays and numpy
    scalars as Python scalars; anything else unchanged (bytes stay bytes)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def as_rows(columns: Mapping[str, list]) -> List[dict]:
    """{feature: [value per example]} (what `read_transformed` returns) as one dict per example."""
    names = sorted(columns)
    count = len(columns[names[0]]) if names else 0
    return [{name: columns[name][i] for name in names} for i in range(count)]


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _value_diff(actual: Any, expected: Any, rel: float, abs_tol: float) -> Optional[str]:
    """None when the values match (floats within tolerance, bytes == str), else why not."""
    actual, expected = _text(_plain(actual)), _text(_plain(expected))
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return f"{actual!r} != {list(expected)!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            why = _value_diff(a, e, rel, abs_tol)
            if why:
                return f"[{i}]: {why}"
        return None
    if isinstance(expected, float) or isinstance(actual, float):
        if isinstance(actual, (int, float)) and isinstance(expected, (int, float)) and not isinstance(actual, bool):
            if math.isnan(expected) and math.isnan(actual):
                return None
            if math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_tol):
                return None
        return f"{actual!r} != {expected!r} (rel {rel}, abs {abs_tol})"
    return None if actual == expected else f"{actual!r} != {expected!r}"


def _row_diff(actual: Mapping, expected: Mapping, rel: float, abs_tol: float) -> List[str]:
    if sorted(actual) != sorted(expected):
        return [f"features {sorted(actual)} != expected {sorted(expected)}"]
    diffs = []
    for name in sorted(expected):
        why = _value_diff(actual[name], expected[name], rel, abs_tol)
        if why:
            diffs.append(f"{name}: {why}")
    return diffs


def assert_rows_close(
    actual: Sequence[Mapping], expected: Sequence[Mapping], rel: float = REL_TOL, abs_tol: float = ABS_TOL
) -> None:
    """Asserts the same rows in any order: the same feature names, floats within
    ``rel``/``abs_tol`` (NaN matches NaN), lists element by element, bytes equal
    to their UTF-8 text. On failure the message lists the expected rows with no
    match, the actual rows left over, and the field-by-field difference to the
    nearest leftover row. Empty ``expected`` matches only empty ``actual``."""
    left = list(actual)
    unmatched = []
    for want in expected:
        for i, got in enumerate(left):
            if not _row_diff(got, want, rel, abs_tol):
                del left[i]
                break
        else:
            unmatched.append(want)
    if not unmatched and not left:
        return
    lines = [f"{len(actual)} transformed rows, {len(expected)} expected; "
             f"{len(unmatched)} expected rows have no match, {len(left)} transformed rows are left over."]
    for want in unmatched:
        lines.append(f"  expected {dict(want)}")
        if left:
            nearest = min(left, key=lambda got: len(_row_diff(got, want, rel, abs_tol)))
            lines.append(f"    nearest {_readable(nearest)}: " + "; ".join(_row_diff(nearest, want, rel, abs_tol)))
    for got in left:
        lines.append(f"  left over {_readable(got)}")
    raise AssertionError("\n".join(lines))


def _readable(row: Mapping) -> dict:
    return {k: _text(_plain(v)) for k, v in sorted(row.items())}


# ---------------------------------------------------------------- end to end


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

    def rows(self) -> List[dict]:
        """The transformed examples, one dict per example (see `as_rows`)."""
        return as_rows(self.transformed)


def _read_examples(output_dir: str, pattern: str, compression_type: str) -> Dict[str, list]:
    """The tf.Examples in ``output_dir``/``pattern``, parsed with the transformed
    feature spec of ``output_dir``'s transform_fn, as {feature: [value per example]}."""
    import tensorflow as tf
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(output_dir).transformed_feature_spec()
    files = sorted(glob.glob(os.path.join(output_dir, pattern)))
    out: Dict[str, list] = {k: [] for k in spec}
    for record in tf.data.TFRecordDataset(files, compression_type=compression_type):
        parsed = tf.io.parse_single_example(record, spec)
        for k, v in parsed.items():
            out[k].append(_plain(v.values.numpy() if isinstance(v, tf.SparseTensor) else v.numpy()))
    return out


def read_transformed(output_dir: str) -> Dict[str, list]:
    """All transformed examples, as {feature: [value per example]} (dense
    features as scalars, sparse ones as lists)."""
    return _read_examples(output_dir, os.path.join("transformed", "*.tfrecord.gz"), "GZIP")


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


# ---------------------------------------------------------------- in memory (one op)


_EXAMPLES = "transformed.tfrecord"
_PY_STORAGE = {"float": float, "int": int, "string": str}


def _spec_instances(spec, rows: Sequence[Mapping]) -> List[dict]:
    """Rows as TFT instance dicts for the spec's raw features (every column a
    VarLenFeature): a value becomes a one-element list, None or an absent
    column an empty one (missing)."""
    out = []
    for row in rows:
        instance = {}
        for column in spec.columns:
            value = row.get(column.name)
            instance[column.name] = [] if value is None else [_PY_STORAGE[column.storage](value)]
        out.append(instance)
    return out


def analyze_and_transform_rows(
    rows: Sequence[Mapping[str, Any]],
    temp_dir: str,
    spec: Union[str, Any, None] = None,
    preprocessing_fn: Optional[Callable] = None,
    input_feature_spec: Optional[Mapping[str, Any]] = None,
) -> List[dict]:
    """Runs TFT's ``AnalyzeAndTransformDataset`` over ``rows`` in memory
    (DirectRunner, ``tft_beam.Context`` with its scratch under ``temp_dir``) and
    returns the transformed rows as plain Python values (lists for sparse
    features, bytes for strings), in no particular order.

    Args:
      rows: input rows as dicts. With ``spec``: raw column -> value as the
        column stores it (float, int or string; bool as 0/1), None or an
        absent column meaning missing (the spec's missing policy then applies,
        as in the product: NaN, blank strings and null markers are missing too).
        Without: TFT instance dicts for ``input_feature_spec``.
      temp_dir: an empty directory: TFT's scratch, and temp_dir/analyzed gets
        the transform_fn and the transformed examples.
      spec: a `featurebridge.transforms.spec.FeatureSpec` or its YAML/JSON text:
        defines the raw columns and, unless ``preprocessing_fn`` is given, the
        transforms (plain TFT analyzers, `build_preprocessing_fn`). The
        product's shared rules apply (`with_shared_rules`), without the split
        feature.
      preprocessing_fn: a TFT preprocessing_fn to analyze with instead of the spec's.
      input_feature_spec: the raw TF feature spec when no ``spec`` is given.

    Raises:
      ValueError: neither ``spec`` nor ``preprocessing_fn`` with
        ``input_feature_spec`` was given. An empty ``rows`` is analyzed as TFT
        does (default analyzer results); the product refuses it earlier.
    """
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    if spec is not None:
        from featurebridge.transforms import preprocessing
        from featurebridge.transforms.spec import FeatureSpec

        if isinstance(spec, str):
            spec = FeatureSpec.from_text(spec)
        fn = preprocessing.with_shared_rules(
            spec, preprocessing_fn or preprocessing.build_preprocessing_fn(spec), split=False
        )
        feature_spec = preprocessing.raw_feature_spec(spec)
        instances = _spec_instances(spec, rows)
    elif preprocessing_fn is not None and input_feature_spec is not None:
        fn, feature_spec, instances = preprocessing_fn, dict(input_feature_spec), [dict(r) for r in rows]
    else:
        raise ValueError(
            "analyze_and_transform_rows needs a spec, or a preprocessing_fn with its "
            f"input_feature_spec; got spec={spec!r}, preprocessing_fn={preprocessing_fn!r}, "
            f"input_feature_spec={input_feature_spec!r}."
        )
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    out_dir = os.path.join(temp_dir, "analyzed")
    with beam.Pipeline(runner="DirectRunner") as p:
        with tft_beam.Context(temp_dir=os.path.join(temp_dir, "tft_tmp")):
            data = p | "Rows" >> beam.Create(instances, reshuffle=False)
            transformed, transform_fn = (data, metadata) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(fn)
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out_dir)
            _ = (
                transformed
                | "Encode" >> tft_beam.EncodeTransformedDataset()
                | "Write" >> beam.io.WriteToTFRecord(os.path.join(out_dir, _EXAMPLES), shard_name_template="")
            )
    return as_rows(_read_examples(out_dir, _EXAMPLES, ""))


def assert_analyze_and_transform_results(
    rows: Sequence[Mapping[str, Any]],
    expected: Sequence[Mapping[str, Any]],
    temp_dir: str,
    spec: Union[str, Any, None] = None,
    preprocessing_fn: Optional[Callable] = None,
    input_feature_spec: Optional[Mapping[str, Any]] = None,
    rel: float = REL_TOL,
    abs_tol: float = ABS_TOL,
) -> List[dict]:
    """`analyze_and_transform_rows`, then `assert_rows_close` against ``expected``
    (every transformed feature, in any row order). Returns the transformed rows."""
    actual = analyze_and_transform_rows(rows, temp_dir, spec, preprocessing_fn, input_feature_spec)
    assert_rows_close(actual, expected, rel, abs_tol)
    return actual


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
