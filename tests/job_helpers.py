"""One shared run of the whole job (sample data -> analyze -> train -> export ->
predict) for the train, export, predict and demo tests, plus helpers that
read what it wrote. The run happens once per test process, whichever test
module asks first."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys
from typing import Dict, List

_RUN = {}

# Tiny but complete: 3 files of 200 rows, the last held out; 2 epochs.
ROWS, FILES, EPOCHS = 600, 3, 2


@dataclasses.dataclass
class JobRun:
    root: str
    summary: dict
    printed: str

    @property
    def analyzed(self) -> str:
        return os.path.join(self.root, "analyzed")

    @property
    def model(self) -> str:
        return os.path.join(self.root, "model")

    @property
    def serving(self) -> str:
        """The serving SavedModel: the highest version under model/serving/."""
        from featurebridge.transforms.layout import serving_dir

        return serving_dir(self.model)

    @property
    def predictions(self) -> str:
        return os.path.join(self.root, "predictions")

    @property
    def data(self) -> str:
        return os.path.join(self.root, "data")

    def spec(self):
        from featurebridge.transforms.spec import load_spec

        return load_spec(os.path.join(self.data, "spec.yaml"))

    def prediction_rows(self) -> List[dict]:
        rows = []
        for path in sorted(glob.glob(os.path.join(self.predictions, "predictions-*.jsonl"))):
            with open(path, encoding="utf-8") as f:
                rows += [json.loads(line) for line in f]
        return rows


def job_run(tmp_path_factory) -> JobRun:
    """Runs `featurebridge demo` small (DirectRunner), once per process."""
    if "run" not in _RUN:
        from featurebridge.pipelines import demo

        root = str(tmp_path_factory.mktemp("job") / "demo_output")
        # Clean data here: tests elsewhere count rows exactly (test_demo checks dirty rows).
        argv = ["--output", root, "--rows", str(ROWS), "--files", str(FILES), "--epochs", str(EPOCHS), "--dirty_rows", "0"]
        summary = demo.run(argv)
        _RUN["run"] = JobRun(root, summary, demo.summarize(summary, root))
    return _RUN["run"]


# A fresh interpreter that imports only TensorFlow: loads the export, notes
# whether TFT / tf_keras / Beam came along, and runs every signature.
FRESH_PROCESS_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

serving_dir, examples_path, raw_path, out_path = sys.argv[1:5]
model = tf.saved_model.load(serving_dir)
examples = [r.numpy() for r in tf.data.TFRecordDataset(examples_path)]
with open(raw_path) as f:
    raw = json.load(f)
raw_inputs = {k: tf.constant(v["values"], dtype=v["dtype"]) for k, v in raw.items()}
out = {}

def array(value):  # string outputs (class names) as fixed-width bytes: np.load needs no pickle
    a = value.numpy()
    return a.astype(bytes) if a.dtype == object else a

for name, value in model.signatures["serving_default"](examples=tf.constant(examples)).items():
    out["default/" + name] = array(value)
for name, value in model.signatures["serving_raw"](**raw_inputs).items():
    out["raw/" + name] = array(value)
for name, value in model.signatures["transform_features"](examples=tf.constant(examples)).items():
    out["transform/" + name] = array(value)
leaked = [m for m in ("tensorflow_transform", "tf_keras", "tfx_bsl", "apache_beam") if m in sys.modules]
np.savez(out_path, **out)
print(json.dumps({"signatures": sorted(model.signatures), "leaked": leaked}))
"""


def run_fresh_process(serving_dir: str, examples: List[bytes], raw: Dict[str, dict], tmp_dir: str):
    """Returns ({output: array}, {"signatures", "leaked"}) from a fresh process."""
    import numpy as np
    import tensorflow as tf

    examples_path = os.path.join(tmp_dir, "examples.tfrecord")
    with tf.io.TFRecordWriter(examples_path) as w:
        for e in examples:
            w.write(e)
    raw_path = os.path.join(tmp_dir, "raw.json")
    with open(raw_path, "w") as f:
        json.dump(raw, f)
    out_path = os.path.join(tmp_dir, "out.npz")
    script = os.path.join(tmp_dir, "fresh.py")
    with open(script, "w") as f:
        f.write(FRESH_PROCESS_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run(
        [sys.executable, script, serving_dir, examples_path, raw_path, out_path],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out_path) as data:
        return {k: data[k] for k in data.files}, info
