"""Analyzer results travel inside the pipeline: `AnalyzeAndTransform`'s
"analyzer_results" PCollection (one element, {key: [floats]}) on the
one-pass path, the plain TFT path and with a user's preprocessing_fn; nothing named
``_constants_fn`` is written; `transforms.constants_json` does not import
`transforms.analyze`.

One small in-memory pipeline (DirectRunner, real TFT) applies the transform
three times, with the batches built directly (no reader), and without a
`transform_input`, so TFT's AnalyzeAndTransformDataset path is the one run
(the CLI tests cover AnalyzeDataset + TransformDataset).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SPEC = """
label: {column: y, kind: regression}
columns:
  - {name: x, type: float, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 3}, scale_0_1]}
  - {name: c, type: string, missing: {constant: "?"}, transforms: [{type: vocabulary}]}
  - {name: y, type: float}
"""
X = [1.0, 2.0, 3.0, 4.0, None, 6.0, 2.5, None]
C = [b"a", b"b", None, b"a", b"c", b"a", b"b", b"a"]
KEYS = {"x/fill", "x_zscore/mean", "x_zscore/var", "x_bucketize/boundaries", "x_scale_0_1/min", "x_scale_0_1/max"}


def test_constants_does_not_import_analyze():
    code = (
        "import sys, featurebridge.transforms.constants_json; "
        "sys.exit('featurebridge.transforms.analyze' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_analysis_holder_pickles_without_pcollections():
    from featurebridge.transforms.one_pass import AnalysisHolder

    holder = AnalysisHolder(object())
    assert pickle.loads(pickle.dumps(holder)).analysis is None


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow as tf

    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.analyze import AnalyzeAndTransform
    from featurebridge.transforms.spec import FeatureSpec

    spec = FeatureSpec.from_text(SPEC)
    batch = pa.RecordBatch.from_pydict(
        {
            "x": [[] if v is None else [v] for v in X],
            "c": [[] if v is None else [v] for v in C],
            "y": [[float(i)] for i in range(len(X))],
        },
        schema=fb_io.arrow_schema_for(spec),
    )

    def user_fn(inputs):
        dense = tf.sparse.to_dense(inputs["x"], default_value=0.0)
        return {"x": tf.reshape(dense[:, :1], [-1])}

    root = tmp_path_factory.mktemp("analyzer_results")
    got, outputs = {}, {}
    with beam.Pipeline() as p:
        batches = p | beam.Create([batch], reshuffle=False)
        for name, kwargs in (("auto", {}), ("tft", {"analyzer": "tft"}), ("user", {"preprocessing_fn": user_fn})):
            out = str(root / name)
            outputs[name] = out
            analyzed = batches | f"Analyze_{name}" >> AnalyzeAndTransform(spec, out, os.path.join(out, "_tmp"), **kwargs)
            got[f"{name}_is_none"] = analyzed["analyzer_results"] is None
            if analyzed["analyzer_results"] is not None:
                _ = (
                    analyzed["analyzer_results"]
                    | f"All_{name}" >> beam.combiners.ToList()
                    | f"Keep_{name}" >> beam.Map(_dump, str(root / f"{name}.json"))
                )
    for name in ("auto", "tft"):
        with open(root / f"{name}.json", encoding="utf-8") as f:
            got[name] = json.load(f)
    return got, outputs


def _dump(elements, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(elements, f)


@pytest.mark.parametrize("analyzer", ["auto", "tft"])
def test_one_element_with_the_spec_keys_and_values(results, analyzer):
    got, _ = results
    assert len(got[analyzer]) == 1
    values = got[analyzer][0]
    assert set(values) - {"none"} == KEYS
    present = np.array([v for v in X if v is not None], np.float64)
    fill = present.mean()
    filled = np.array([fill if v is None else v for v in X], np.float64)
    assert values["x/fill"] == pytest.approx([fill], rel=1e-6)
    assert values["x_zscore/mean"] == pytest.approx([filled.mean()], rel=1e-6)
    assert values["x_zscore/var"] == pytest.approx([filled.var()], rel=1e-5)
    assert values["x_scale_0_1/min"] == [1.0] and values["x_scale_0_1/max"] == [6.0]
    boundaries = values["x_bucketize/boundaries"]
    assert len(boundaries) == 2 and boundaries == sorted(boundaries)


def test_fast_and_plain_agree(results):
    got, _ = results
    fast, plain = got["auto"][0], got["tft"][0]
    for key in KEYS - {"x_bucketize/boundaries"}:
        assert fast[key] == pytest.approx(plain[key], rel=1e-5), key


def test_none_for_a_user_fn_and_no_constants_fn_dir(results):
    got, outputs = results
    assert got["user_is_none"] and not got["auto_is_none"] and not got["tft_is_none"]
    for out in outputs.values():
        assert os.path.isdir(os.path.join(out, "transform_fn"))
        assert not os.path.exists(os.path.join(out, "_constants_fn"))
