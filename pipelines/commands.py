"""The `featurebridge` command table: each command's one-line summary, its help
text, the options class its --help lists, and the module that runs it.

Light on purpose: the CLI reads this table to list commands and to print a
command's --help, which then imports only `featurebridge.pipelines.options`
(Beam's option classes, no TensorFlow). A job module is imported only to run it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

__all__ = ["COMMANDS", "Command"]


@dataclasses.dataclass(frozen=True)
class Command:
    """One `featurebridge` command.

    Attributes:
      name: what the user types (``featurebridge NAME``).
      summary: one line for ``featurebridge --help``.
      module: the module whose ``run(argv)`` runs it (imported only to run).
      options: the name of its options class in featurebridge.pipelines.options
        (None: the module prints its own help with ``print_help()``).
      description: the help text above the options.
    """

    name: str
    summary: str
    module: str
    options: Optional[str] = None
    description: str = ""


_ANALYZE = """\
`featurebridge analyze`: raw files + feature spec -> TFT artifacts.

    featurebridge analyze --input 'data/*.csv' --spec spec.yaml --output OUT

Also ``python -m featurebridge.pipelines analyze ...``. Any Beam pipeline option may follow
(``--runner``, ``--direct_num_workers``...), or come from ``--runner_config``."""

_TRAIN = """\
`featurebridge train`: analyzed data -> trained model + raw-feature serving SavedModel.

    featurebridge train --analyzed OUT --output MODEL [--model linear|dnn|wide_and_deep]
                        [--epochs N] [--batch_size N]

Writes MODEL/serving/<version>/ (a SavedModel TF Serving loads as it is:
serving_default on raw tf.Examples, serving_raw on named raw tensors,
transform_features), MODEL/metrics.json (model vs a trivial baseline on a
held-out split, per epoch and per class), MODEL/logs/ (TensorBoard) and
MODEL/manifest.json."""

_PREDICT = """\
`featurebridge predict`: raw files + trained model -> predictions, on Beam.

    featurebridge predict --model MODEL --input 'new/*.csv' --output PRED

Rows are read with the same readers as analyze (rows that cannot be used go
to PRED/rejected/ with their reason), predicted with RunInference over the
serving SavedModel (loaded once per worker), and written as JSON lines to
PRED/predictions-*.jsonl with the row's key column (when the spec has one),
``__source__`` and ``__row__``, so each prediction joins back to its input.
Any Beam pipeline option may follow, or come from --runner_config."""

_RUN = """\
`featurebridge run`: the whole job, analyze -> train -> export -> predict.

    featurebridge run --input 'data/*.csv' --spec spec.yaml --output OUT [--holdout GLOB]

Writes OUT/analyzed/ (the analyze output), OUT/model/ (serving SavedModel,
metrics), OUT/predictions/ (predictions on the held-out rows) and
OUT/summary.json. The held-out rows are --holdout, else the last input file
when there are several; they are never analyzed or trained on. Flags the job
does not know are Beam pipeline options for the analyze and predict stages
(``--runner``, ``--direct_num_workers``, ``--runner_config FILE``...)."""

_LINEAGE = """\
`featurebridge lineage`: where predictions, a model or an analyze output came from.

    featurebridge lineage PATH [--verify] [--json]

PATH: a `run` output, a predictions directory or file, a model or an analyze
output. Walks predictions -> model -> analyzed -> input files and spec, each
step linked by the sha256 of the manifest it was made from; --verify
recomputes every digest and names what changed (exit 1)."""

_DEMO = """\
`featurebridge demo` (what `make demo` runs): sample data, then the whole job.

    featurebridge demo [--output demo_output] [--overwrite] [--rows N]

Writes seeded sample sessions (numbers with missing values, categoricals of
10 to 100,000 values with a skewed distribution, free text, an id key and a
binary label that depends on them) and their feature spec under
OUTPUT/data/, then runs `featurebridge run` on the DirectRunner with the last
file held out. Everything it writes is under OUTPUT/."""

COMMANDS: Dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "analyze", "TFT analyze pass: raw files + spec -> transform_fn, constants",
            "featurebridge.pipelines.analyze", "AnalyzeOptions", _ANALYZE,
        ),
        Command(
            "expansion-service", "Beam expansion service for Java/Flink/Spark (cross-language)",
            "featurebridge.expansion_service.__main__",
        ),
        Command(
            "train", "train on analyzed data; export a raw-feature serving SavedModel",
            "featurebridge.pipelines.train", "TrainArgs", _TRAIN,
        ),
        Command(
            "predict", "batch predictions on Beam (RunInference) with a trained model",
            "featurebridge.pipelines.predict", "PredictOptions", _PREDICT,
        ),
        Command(
            "run", "the whole job: analyze -> train -> export -> predict on held-out rows",
            "featurebridge.pipelines.run_job", "RunArgs", _RUN,
        ),
        Command(
            "lineage", "where an output came from: predictions -> model -> analyzed -> inputs; --verify digests",
            "featurebridge.pipelines.lineage", None, _LINEAGE,
        ),
        Command(
            "report", "the statistics report (report.html) of an analyze output, with drift against --baseline",
            "featurebridge.pipelines.report", None,
        ),
        Command(
            "demo", "generate sample data and run the whole job on it (make demo)",
            "featurebridge.pipelines.demo", "DemoArgs", _DEMO,
        ),
    )
}
