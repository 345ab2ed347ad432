"""One op at a time, in memory: a tiny input through TFT's
AnalyzeAndTransformDataset on the DirectRunner (tests.analyze_helpers.
assert_analyze_and_transform_results), checked against values worked out by
hand from that input. The end-to-end analyze job is tested in test_analyze.py."""

import importlib
import math

import pytest

from tests.analyze_helpers import assert_analyze_and_transform_results, assert_rows_close


@pytest.fixture(scope="module", autouse=True)
def _tft_imported():
    """TensorFlow, TFT and Beam imported once, before the first test's clock starts."""
    importlib.import_module("tensorflow_transform.beam")


def test_zscore_uses_the_population_mean_and_std(tmp_path):
    # x = 1, 2, 3, 4: mean 2.5, population variance 1.25.
    spec = "columns:\n  - {name: x, type: float, transforms: [zscore]}\n"
    std = math.sqrt(1.25)
    assert_analyze_and_transform_results(
        [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}, {"x": 4.0}],
        [{"x_zscore": (v - 2.5) / std} for v in (1.0, 2.0, 3.0, 4.0)],
        str(tmp_path),
        spec=spec,
    )


def test_bucketize_puts_each_cluster_in_its_own_bucket(tmp_path):
    # Three equal clusters and three buckets: the boundaries lie in (1, 10] and
    # (10, 100], whatever the sketch picks, so each cluster is one bucket.
    spec = "columns:\n  - {name: x, type: float, transforms: [{type: bucketize, num_buckets: 3}]}\n"
    values = [1.0, 10.0, 100.0] * 3
    assert_analyze_and_transform_results(
        [{"x": v} for v in values],
        [{"x_bucketize": {1.0: 0, 10.0: 1, 100.0: 2}[v]} for v in values],
        str(tmp_path),
        spec=spec,
    )


def test_vocabulary_ids_follow_frequency(tmp_path):
    # b three times, a twice, c once: ids 0, 1, 2.
    spec = "columns:\n  - {name: c, type: string, transforms: [vocabulary]}\n"
    values = ["b", "a", "b", "c", "b", "a"]
    assert_analyze_and_transform_results(
        [{"c": v} for v in values],
        [{"c_vocabulary": {"b": 0, "a": 1, "c": 2}[v]} for v in values],
        str(tmp_path),
        spec=spec,
    )


def test_missing_values_are_filled_before_the_transform(tmp_path):
    # x: mean of 1 and 3 is 2; c: "a" is the most frequent; k: the constant 7.
    spec = """
columns:
  - {name: x, type: float, missing: mean, transforms: [identity]}
  - {name: c, type: string, missing: most_frequent, transforms: [identity]}
  - {name: k, type: int, missing: {constant: 7}, transforms: [identity]}
"""
    rows = [
        {"x": 1.0, "c": "a", "k": 1},
        {"x": None, "c": None, "k": None},
        {"x": 3.0, "c": "a", "k": 2},
        {"x": float("nan"), "c": "b", "k": 3},
    ]
    assert_analyze_and_transform_results(
        rows,
        [
            {"x_identity": 1.0, "c_identity": "a", "k_identity": 1},
            {"x_identity": 2.0, "c_identity": "a", "k_identity": 7},
            {"x_identity": 3.0, "c_identity": "a", "k_identity": 2},
            {"x_identity": 2.0, "c_identity": "b", "k_identity": 3},
        ],
        str(tmp_path),
        spec=spec,
    )


def test_a_preprocessing_fn_with_its_own_feature_spec(tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft

    def preprocessing_fn(inputs):
        return {"x_01": tft.scale_to_0_1(inputs["x"])}

    assert_analyze_and_transform_results(
        [{"x": 0.0}, {"x": 5.0}, {"x": 10.0}],
        [{"x_01": 0.0}, {"x_01": 0.5}, {"x_01": 1.0}],
        str(tmp_path),
        preprocessing_fn=preprocessing_fn,
        input_feature_spec={"x": tf.io.FixedLenFeature([], tf.float32)},
    )


def test_a_mismatch_names_the_row_and_the_feature():
    with pytest.raises(AssertionError) as failure:
        assert_rows_close([{"z": 0.5, "id": b"r1"}], [{"z": 0.25, "id": "r1"}])
    message = str(failure.value)
    assert "1 expected rows have no match, 1 transformed rows are left over" in message
    assert "z: 0.5 != 0.25" in message
    assert_rows_close([{"z": 0.5 + 1e-9, "id": b"r1"}], [{"z": 0.5, "id": "r1"}])
