"""Damaged artifacts and failing runs name the file and say what to do, with
no Python traceback (issue 13): a truncated, altered or missing transformed
shard, a corrupt analyze manifest or model description, and a worker-side
data error as the CLI prints it.

Each case damages a copy of the shared job's outputs (tests/job_helpers.py),
so no extra pipeline runs."""

import logging
import os
import shutil
import subprocess
import sys

import pytest

from featurebridge.pipelines import cli
from featurebridge.transforms import layout
from featurebridge.transforms.errors import ArtifactError, ModelDirError


def _featurebridge(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("FEATUREBRIDGE_DEBUG", None)
    exe = os.path.join(os.path.dirname(sys.executable), "featurebridge")
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _analyzed_copy(job, tmp_path) -> str:
    copy = str(tmp_path / "analyzed")
    shutil.copytree(job.analyzed, copy)
    return copy


def _shards(analyzed: str):
    return layout.load_analyzed(analyzed).transformed_files()


def test_a_truncated_shard_is_named_before_training(job, tmp_path):
    from featurebridge.transforms.train import train_model

    analyzed = _analyzed_copy(job, tmp_path)
    shard = _shards(analyzed)[0]
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ArtifactError) as info:
        train_model(analyzed, epochs=1)
    message = str(info.value)
    assert f"{shard} has {size // 2} bytes, but the analyze run wrote {size} bytes there" in message
    assert "Re-run `featurebridge analyze`" in message


def test_a_missing_shard_is_named(job, tmp_path):
    analyzed = _analyzed_copy(job, tmp_path)
    shards = _shards(analyzed)
    os.remove(shards[-1])
    with pytest.raises(ArtifactError, match=f"{shards[-1]} is missing, but the analyze run wrote"):
        layout.load_analyzed(analyzed).transformed_files()


def test_a_shard_damaged_inside_is_named_with_what_was_readable(job, tmp_path):
    """Same size, altered bytes: TensorFlow's DataLossError names no file; ours does."""
    from featurebridge.transforms.train import train_model

    analyzed = _analyzed_copy(job, tmp_path)
    shard = _shards(analyzed)[0]
    with open(shard, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        f.seek(0)
        f.write(bytes(data))
    with pytest.raises(ArtifactError) as info:
        train_model(analyzed, epochs=1)
    message = str(info.value)
    assert message.startswith(f"{shard}: the transformed shard is damaged after "), message
    assert "readable example(s)" in message and "Re-run `featurebridge analyze`" in message


def test_an_example_count_that_disagrees_with_the_manifest_is_refused(job, tmp_path):
    """A shard cut at a record boundary and re-recorded in the manifest still
    fails: the examples must number the rows the analyze run used."""
    import json

    from featurebridge.transforms.train import train_model

    analyzed = _analyzed_copy(job, tmp_path)
    manifest_path = os.path.join(analyzed, layout.MANIFEST)
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["rows"]["used"] += 7
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ArtifactError, match=r"hold \d+ examples, but the analyze run used \d+ rows"):
        train_model(analyzed, epochs=1)


@pytest.mark.parametrize("damage", [b"{\"spec\": {", b"[1, 2]", b"\xff\xfe"])
def test_a_corrupt_analyze_manifest_is_named(job, tmp_path, damage):
    analyzed = _analyzed_copy(job, tmp_path)
    manifest = os.path.join(analyzed, layout.MANIFEST)
    with open(manifest, "wb") as f:
        f.write(damage)
    with pytest.raises(ArtifactError) as info:
        layout.load_analyzed(analyzed)
    assert str(info.value).startswith(manifest), str(info.value)
    assert "Re-run `featurebridge analyze`" in str(info.value)


def test_a_corrupt_model_description_is_named_by_the_cli_without_a_traceback(job, tmp_path):
    from featurebridge.transforms.serving import load_serving_spec

    model = str(tmp_path / "model")
    shutil.copytree(job.model, model)
    info_path = os.path.join(layout.serving_dir(model), layout.SERVING_INFO)
    with open(info_path, "r+b") as f:
        f.truncate(os.path.getsize(info_path) // 2)
    with pytest.raises(ModelDirError, match=f"{info_path} cannot be read as JSON"):
        load_serving_spec(model)
    data = os.path.join(job.data, sorted(p for p in os.listdir(job.data) if p.endswith(".csv"))[0])
    result = _featurebridge("predict", "--model", model, "--input", data, "--output", "preds", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"featurebridge predict: error: {info_path} cannot be read as JSON" in result.stderr
    assert "Re-run `featurebridge train`" in result.stderr
    assert not (tmp_path / "preds").exists()


def test_a_worker_side_data_error_prints_one_line_and_no_traceback(tmp_path):
    """A TFRecord damaged mid-file fails on the worker; the runner logs the
    failure with its traceback, and the CLI says it once, naming the file."""
    import tensorflow as tf

    path = tmp_path / "d.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(22):
            feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    (tmp_path / "spec.yaml").write_text("columns: [{name: x, type: float, transforms: [zscore]}]\n")
    result = _featurebridge("analyze", "--input", "d.tfrecord", "--spec", "spec.yaml", "--output", "o", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if str(path) in line and "at byte" in line]
    assert len(errors) == 1 and errors[0].startswith("featurebridge analyze: error: "), result.stderr[-3000:]
    assert "[while running" not in errors[0]
    assert not (tmp_path / "o").exists()


def test_the_log_format_keeps_tracebacks_out_unless_debugging():
    formatter = cli._NoTracebackFormatter("[featurebridge] %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("apache_beam.runners", logging.ERROR, __file__, 1, "step %s failed", ("Read",), sys.exc_info())
    assert formatter.format(record) == "[featurebridge] step Read failed"
    worker = (
        "Error message from worker: Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    g()\nOverflowError: too large'
    )
    record = logging.LogRecord("apache_beam", logging.ERROR, __file__, 1, worker, None, None)
    assert formatter.format(record) == "[featurebridge] Error message from worker: OverflowError: too large"
