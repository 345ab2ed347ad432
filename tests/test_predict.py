"""Batch prediction on Beam: RunInference over the serving SavedModel, keys
that join back to the input, rejected rows, and agreement with serving_default."""

import glob
import json
import os

import numpy as np
import pytest


pytestmark = pytest.mark.slow

_HEADER = "session_id,purchased,age,basket_value,pages_viewed,device,country,city,product_id,review\n"
# Row 2 has values never seen in training and missing numbers; row 3 has no
# key (rejected: the key column is never filled); row 4 has no label column value.
_ROWS = [
    "k1,1,31.5,20.5,4,mobile,C01,city_0001,p000001,Great quality love it\n",
    "k2,0,,,,fridge,ZZ,city_new,p999999,\n",
    ",1,40,10,3,desktop,C02,city_0002,p000002,slow\n",
    "k4,,55,300,12,tablet,C00,city_0003,p000003,terrible late refund\n",
]


def test_job_predicted_every_held_out_row_with_its_key(job):
    rows = job.prediction_rows()
    holdout = job.summary["inputs"]["holdout"]
    assert job.summary["rows"]["predict"]["predicted"] == len(rows) == 200
    with open(holdout[0]) as f:
        keys = [line.split(",")[0] for line in f.readlines()[1:]]
    assert sorted(r["session_id"] for r in rows) == sorted(keys)
    assert {r["__source__"] for r in rows} == set(holdout)
    by_row = {r["__row__"]: r["session_id"] for r in rows}
    assert all(by_row[i + 1] == keys[i] for i in range(len(keys)))  # position joins back too
    assert all(0 < r["probability"] < 1 and r["class_id"] in (0, 1) for r in rows)
    assert all(r["class_name"] == str(r["class_id"]) for r in rows)  # an int 0/1 label's class names
    with open(os.path.join(job.predictions, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["rows"] == {"read": 200, "used": 200, "rejected": 0, "predicted": 200}


def test_predict_cli_rejects_unusable_rows_and_matches_serving(job, tmp_path):
    import tensorflow as tf

    from featurebridge.pipelines import predict as predict_job
    from featurebridge.transforms.examples import rows_to_examples

    data = tmp_path / "new.csv"
    data.write_text(_HEADER + "".join(_ROWS))
    out = tmp_path / "pred"
    result = predict_job.run(["--model", job.model, "--input", str(data), "--output", str(out)])
    assert result["rows"] == {"read": 4, "used": 3, "rejected": 1, "predicted": 3}
    predictions = {}
    for path in glob.glob(str(out / "predictions-*.jsonl")):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                predictions[row["session_id"]] = row
    assert sorted(predictions) == ["k1", "k2", "k4"]
    assert predictions["k4"]["__row__"] == 4
    rejected = [json.loads(line) for p in glob.glob(str(out / "rejected" / "*.jsonl")) for line in open(p)]
    assert len(rejected) == 1 and rejected[0]["row"] == 3 and rejected[0]["column"] == "session_id"

    # The RunInference path gives what serving_default gives for the same rows.
    model = tf.saved_model.load(job.serving)
    spec = job.spec()
    raw = [
        {"age": 31.5, "basket_value": 20.5, "pages_viewed": 4, "device": "mobile", "country": "C01",
         "city": "city_0001", "product_id": "p000001", "review": "Great quality love it"},
        {"device": "fridge", "country": "ZZ", "city": "city_new", "product_id": "p999999"},
        {"age": 55.0, "basket_value": 300.0, "pages_viewed": 12, "device": "tablet", "country": "C00",
         "city": "city_0003", "product_id": "p000003", "review": "terrible late refund"},
    ]
    expected = model.signatures["serving_default"](examples=tf.constant(rows_to_examples(spec, raw)))
    got = [predictions[k]["probability"] for k in ("k1", "k2", "k4")]
    np.testing.assert_allclose(got, expected["probability"].numpy(), atol=1e-6)


def test_predict_ptransform_on_record_batches(job, tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from featurebridge.transforms import io as fb_io
    from featurebridge.transforms.predict import Predict, prediction_fields

    predict = Predict(job.model, max_batch_size=2)
    assert [n for n, _ in prediction_fields(job.model)] == [
        "session_id", "__source__", "__row__", "probability", "class_id", "class_name"
    ]
    data = tmp_path / "rows.csv"
    data.write_text(_HEADER + _ROWS[0] + _ROWS[1] + _ROWS[3])
    batches = [v for k, v in fb_io.read_file(str(data), predict.spec, include_position=True) if k == "batch"]

    def key_and_fields(row):
        return (row["session_id"], row["__row__"], sorted(row))

    fields = sorted(n for n, _ in prediction_fields(job.model))
    with TestPipeline() as p:
        out = p | beam.Create(batches) | predict | beam.Map(key_and_fields)
        assert_that(out, equal_to([("k1", 1, fields), ("k2", 2, fields), ("k4", 3, fields)]))


def test_predict_errors_say_what_to_do(job, tmp_path):
    from featurebridge.pipelines import predict as predict_job
    from featurebridge.transforms.staging import OutputExistsError
    from featurebridge.transforms.errors import ModelDirError
    from featurebridge.transforms.predict import Predict

    with pytest.raises(ModelDirError, match="is not a featurebridge model.*--output of `featurebridge train`"):
        Predict(str(tmp_path))
    with pytest.raises(ValueError, match="--model is required"):
        predict_job.run(["--input", "x.csv", "--output", str(tmp_path / "p")])
    with pytest.raises(OutputExistsError, match="already exists"):
        predict_job.run(["--model", job.model, "--input", job.summary["inputs"]["holdout"][0], "--output", job.predictions])


def test_predict_with_label_passes_the_raw_label_through(job, tmp_path):
    from featurebridge.pipelines import predict as predict_job
    from featurebridge.transforms.errors import InputError
    from featurebridge.transforms.predict import LABEL_FIELD, prediction_fields

    assert [n for n, _ in prediction_fields(job.model, with_label=True)] == [
        "session_id", "__source__", "__row__", LABEL_FIELD, "probability", "class_id", "class_name"
    ]
    assert dict(prediction_fields(job.model, with_label=True))[LABEL_FIELD] == "int"
    # Row 5's label is not a class id and row 6's is not an int: both kept, label None.
    extra = [
        "k5,7,20,5,1,mobile,C01,city_0001,p000001,ok\n",
        "k6,yes,20,5,1,mobile,C01,city_0001,p000001,ok\n",
    ]
    data = tmp_path / "new.csv"
    data.write_text(_HEADER + "".join(_ROWS + extra))
    plain = predict_job.run_predict(job.model, str(data), str(tmp_path / "plain"))
    labelled = predict_job.run_predict(job.model, str(data), str(tmp_path / "labelled"), with_label=True)
    assert labelled["rows"] == plain["rows"] == {"read": 6, "used": 5, "rejected": 1, "predicted": 5}

    def rows(out):
        found = {}
        for path in glob.glob(str(out / "predictions-*.jsonl")):
            with open(path) as f:
                for line in f:
                    row = json.loads(line)
                    found[row["session_id"]] = row
        return found

    with_label, without = rows(tmp_path / "labelled"), rows(tmp_path / "plain")
    assert {k: r[LABEL_FIELD] for k, r in with_label.items()} == {"k1": 1, "k2": 0, "k4": None, "k5": None, "k6": None}
    assert all(LABEL_FIELD not in r for r in without.values())
    for k, r in with_label.items():
        assert {n: v for n, v in r.items() if n != LABEL_FIELD} == without[k]

    (tmp_path / "nolabel.csv").write_text(_HEADER.replace("purchased,", "") + "k1,31.5,20.5,4,mobile,C01,city_0001,p000001,x\n")
    with pytest.raises(InputError, match="purchased"):
        predict_job.run_predict(job.model, str(tmp_path / "nolabel.csv"), str(tmp_path / "p3"), with_label=True)
