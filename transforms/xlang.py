"""Row-based PTransforms that cross the language boundary.

Each takes and returns schema'd Beam Rows (the portable ``beam:coder:row:v1``
coder), never pickled Python objects, and takes only Row-encodable
configuration (strings), so a Java pipeline can call it through the expansion
service. Configuration is validated in the constructor, which runs on the
expansion side: a bad spec or path fails the ``Expand`` call, not a worker.

- `AnalyzeAndTransformRows(spec, output_dir)`: raw Rows -> analyze artifacts
  in ``output_dir`` + transformed Rows + rejected Rows.
- `TransformRows(analyzed_dir)`: raw Rows -> transformed Rows with an
  existing transform_fn.
- `PredictRows(model_dir)`: raw Rows -> Rows with the serving model's outputs.

Input Rows carry the spec's raw columns by name (other fields are ignored);
every field may be null, which means a missing value. Rows become Arrow
RecordBatches with the file readers' rules (`featurebridge.transforms.rows`),
so the same values are rejected for the same reasons; the work itself is the
library's own PTransforms (`AnalyzeToDirectory`, `TransformBatches`, `Predict`).
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.typehints.row_type import RowTypeConstraint

from featurebridge.transforms import io as fb_io
from featurebridge.transforms import layout
from featurebridge.transforms import rows as fb_rows
from featurebridge.transforms import validation
from featurebridge.transforms.errors import ArtifactError
from featurebridge.transforms.rows import REJECTED_ROW_TYPE, raw_row_type, transformed_row_type
from featurebridge.transforms.spec import SPLIT_FEATURE, FeatureSpec, SpecError

__all__ = [
    "AnalyzeAndTransformRows",
    "PredictRows",
    "REJECTED_ROW_TYPE",
    "TransformRows",
    "XLANG_CLASSES",
    "raw_row_type",
    "transformed_row_type",
]

_LOG = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000


# ---------------------------------------------------------------------------
# Config validation (expansion side).


def _require_text(value, field: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{field}: expected {what} as a non-empty string; got {type(value).__name__} {value!r:.80}.")
    return value


def _local_dir(value, field: str) -> str:
    """An absolute local path without '..' segments (workers and the service
    must agree on it; relative paths would depend on each one's cwd)."""
    value = _require_text(value, field, "a directory path")
    if "://" in value:
        raise SpecError(f"{field}: {value!r} is a URL; pass an absolute path on a filesystem the workers share.")
    if not os.path.isabs(value) or ".." in value.replace("\\", "/").split("/"):
        raise SpecError(f"{field}: {value!r} must be an absolute path without '..' segments.")
    return os.path.normpath(value)


def _parse_spec(text) -> FeatureSpec:
    text = _require_text(text, "spec", "the feature spec as YAML or JSON text")
    return FeatureSpec.from_text(text, source="spec")


# ---------------------------------------------------------------------------
# The cross-language transforms.


class AnalyzeAndTransformRows(beam.PTransform):
    """Raw Rows -> analyze artifacts in `output_dir`, transformed Rows and rejected Rows.

    Runs the same analyze pass as ``featurebridge analyze`` (transform_fn/,
    transformed_metadata/, transformed/, rejected/, constants.json,
    manifest.json, written atomically into `output_dir`), then applies the new
    transform_fn to the usable rows.

    Input: Rows with one field per raw column of the spec (nullable; a null or
    empty string is a missing value, handled by the column's policy).
    Outputs: ``{"output": Rows with the key column (if any), each transformed
    feature and the transformed label; "rejected": Rows (source, row, column,
    value, reason)}``. Rows that cannot be used are in "rejected" only.

    Args:
      spec: the feature spec as YAML or JSON text.
      output_dir: an absolute path on a filesystem the workers share; must not
        exist, and is never replaced (cross-language runs never overwrite).
      batch_size: rows per Arrow batch.

    Raises:
      SpecError: the spec is invalid, or `output_dir` is not an absolute path
        (the message names the field).
      OutputExistsError: `output_dir` already exists.
      Pipeline failure EmptyDataError: no usable rows; OutputExistsError:
        `output_dir` appeared before the commit (it is never replaced; the
        results stay in the staging directory beside it, which the message names).

    The staging directory is a sibling of `output_dir` (same parent), so it
    is inside whatever directory holds `output_dir`.
    """

    def __init__(self, spec: str, output_dir: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        from featurebridge.transforms.staging import OutputExistsError

        self._spec = _parse_spec(spec)
        self._output_dir = _local_dir(output_dir, "output_dir")
        # lexists: a link there (even a dangling one) is something the commit must not replace.
        if os.path.lexists(self._output_dir):
            raise OutputExistsError(
                f"output_dir: {output_dir!r} already exists. Choose a new directory; "
                "cross-language runs never overwrite."
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: expected a positive integer; got {batch_size!r}.")
        self._batch_size = batch_size
        parent, name = os.path.split(self._output_dir)
        # Not `.NAME.staging-*`: a CLI run on the same path cleans those up as leftovers of
        # its own earlier runs, and this job outlives the call that set it up.
        self._staging = os.path.join(parent, f".{name}.xlang-staging-{uuid.uuid4().hex[:12]}")
        self._fields = fb_rows.with_key(self._spec, fb_rows.output_fields_from_spec(self._spec))
        self.output_type = RowTypeConstraint.from_fields(self._fields)

    def expand(self, rows):
        from featurebridge.transforms import provenance
        from featurebridge.transforms.analyze import AnalyzeToDirectory

        columns = self._spec.column_names
        fb_rows.check_input_fields(rows, columns, "AnalyzeAndTransformRows")
        parsed = rows | "RowsToBatches" >> fb_rows.RowsToBatches(
            self._spec, columns, self._batch_size, pass_key=True
        )
        manifest = {
            "job": "analyze (cross-language rows)",
            "started": provenance.utc_now(),
            "inputs": [],
            "input_format": "beam rows",
            "spec": self._spec.to_dict(),
            "spec_source": "spec",
            "versions": provenance.package_versions(),
        }
        read = fb_io.ReadResult(
            parsed.batches,
            parsed.rejected | "RejectedJson" >> beam.Map(lambda r: r.to_json()),
            parsed.stats,
        )
        # TFT's own transformed batches (the ones written to transformed/),
        # with the key passed through: each row is transformed once.
        analyzed = read | "AnalyzeToDirectory" >> AnalyzeToDirectory(
            self._spec, self._staging, self._output_dir, manifest=manifest,
            passthrough=_key_passthrough(self._spec), overwrite=False,
        )
        transformed = analyzed["transformed"] | "ToRows" >> fb_rows.BatchesToRows(self._fields, self._spec.key)
        rejected = parsed.rejected | "RejectedRows" >> beam.Map(fb_rows.rejected_to_row).with_output_types(
            REJECTED_ROW_TYPE
        )
        return {"output": transformed, "rejected": rejected}


def _key_passthrough(spec: FeatureSpec) -> List[pa.Field]:
    """The key column's copy that TFT passes through the transform (none without a key)."""
    if not spec.key:
        return []
    return [pa.field(fb_rows.KEY_PASSTHROUGH, validation.arrow_schema_for(spec).field(spec.key).type)]


def _load_analyzed(analyzed_dir: str) -> Tuple[FeatureSpec, List[Tuple[str, type]]]:
    """The spec and transformed Row fields of an analyze output.

    Raises:
      SpecError: naming the analyzed_dir field, when it is not an analyze
        output or was made with a custom preprocessing_fn.
    """
    try:
        analyzed = layout.load_analyzed(analyzed_dir)
    except ArtifactError as e:
        raise SpecError(f"analyzed_dir: {e}") from None
    if analyzed.custom_preprocessing_fn:
        raise SpecError(
            f"analyzed_dir: {analyzed_dir!r} was made with a custom preprocessing_fn "
            f"({analyzed.custom_preprocessing_fn}); cross-language transform supports spec-built "
            "transform_fns only."
        )
    feature_spec = analyzed.tft_output().transformed_feature_spec()
    feature_spec.pop(SPLIT_FEATURE, None)  # the train/eval bucket is not a feature
    return analyzed.spec, fb_rows.output_fields_from_feature_spec(dict(sorted(feature_spec.items())))


class TransformRows(beam.PTransform):
    """Raw Rows -> transformed Rows with the transform_fn in `analyzed_dir`.

    Input: Rows with one field per raw column of the analyzed spec; the label
    field may be left out (the output then has no label). Null or empty values
    are missing and are filled by the baked-in policies.
    Outputs: ``{"output": Rows (key column if any, then each transformed
    feature in name order), "rejected": Rows (source, row, column, value,
    reason)}`` for values the readers would also reject (bad numbers, a
    missing value whose policy is reject).

    Args:
      analyzed_dir: an absolute path to a `featurebridge analyze` output.
      batch_size: rows per Arrow batch.

    Raises:
      SpecError: `analyzed_dir` is not an absolute path to an analyze output.
    """

    def __init__(self, analyzed_dir: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        self._dir = _local_dir(analyzed_dir, "analyzed_dir")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: expected a positive integer; got {batch_size!r}.")
        self._batch_size = batch_size
        self._spec, self._features = _load_analyzed(self._dir)

    def expand(self, rows):
        from featurebridge.transforms.transform_batches import TransformBatches

        spec = self._spec
        names = fb_rows.input_field_names(rows)
        absent: List[str] = []
        if spec.label and names is not None and spec.label.column not in names:
            absent = [spec.label.column]
        required = [c for c in spec.column_names if c not in absent]
        fb_rows.check_input_fields(rows, required, "TransformRows")
        fields = fb_rows.with_key(spec, [(n, t) for n, t in self._features if n not in absent])
        parsed = rows | "RowsToBatches" >> fb_rows.RowsToBatches(spec, required, self._batch_size, pass_key=True)
        transformed = (
            parsed.batches
            | "TransformBatches" >> TransformBatches(self._dir, passthrough=_key_passthrough(spec), spec=spec)
            | "ToRows" >> fb_rows.BatchesToRows(fields, spec.key)
        )
        rejected = parsed.rejected | "RejectedRows" >> beam.Map(fb_rows.rejected_to_row).with_output_types(
            REJECTED_ROW_TYPE
        )
        return {"output": transformed, "rejected": rejected}


_PREDICTION_TYPES = {"string": Optional[str], "int": int, "float": float, "float_list": Sequence[float]}
# Beam Row field names cannot start with "_": the position columns are renamed.
_POSITION_FIELDS = {validation.SOURCE_COLUMN: "input_source", validation.ROW_COLUMN: "input_row"}


def _prediction_row(fields: Sequence[str]):
    def convert(d: Dict[str, object]):
        return beam.Row(**{_POSITION_FIELDS.get(f, f): d[f] for f in fields})

    return convert


class PredictRows(beam.PTransform):
    """Raw Rows -> Rows with the serving model's predictions (`featurebridge.transforms.predict.Predict`).

    Input: Rows with one field per raw column of the model's spec (the label is
    not needed; extra fields are ignored). Null or empty values are missing and
    are filled inside the model by the spec's policies.
    Outputs: ``{"output": Rows (key column if any, input_source, input_row,
    then the model outputs: probability, class_id and class_name for binary,
    probabilities, class_id and class_name for multiclass, prediction for
    regression);
    "rejected": Rows (source, row, column, value, reason)}``. ``input_source``
    and ``input_row`` name the batch and row a prediction came from, as in
    the rejected output.

    Args:
      model_dir: an absolute path to a `featurebridge train` output (or its serving/).
      batch_size: rows per Arrow batch.

    Raises:
      SpecError: `model_dir` is not an absolute path.
      ModelDirError: `model_dir` holds no featurebridge serving model.
    """

    def __init__(self, model_dir: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        from featurebridge.transforms.predict import prediction_fields
        from featurebridge.transforms.serving import load_serving_spec

        self._dir = _local_dir(model_dir, "model_dir")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SpecError(f"batch_size: expected a positive integer; got {batch_size!r}.")
        self._batch_size = batch_size
        self._spec = load_serving_spec(self._dir)
        self._fields = prediction_fields(self._dir)
        typed = []
        for name, kind in self._fields:
            if name == self._spec.key:
                typed.append((name, Optional[fb_rows.RAW_PY_TYPES[kind]]))
            else:
                typed.append((_POSITION_FIELDS.get(name, name), _PREDICTION_TYPES[kind]))
        self.output_type = RowTypeConstraint.from_fields(typed)

    def expand(self, rows):
        from featurebridge.transforms.predict import Predict

        columns = self._spec.column_names
        fb_rows.check_input_fields(rows, columns, "PredictRows")
        parsed = rows | "RowsToBatches" >> fb_rows.RowsToBatches(
            self._spec, columns, self._batch_size, include_position=True
        )
        predictions = (
            parsed.batches
            | "Predict" >> Predict(self._dir)
            | "ToRows" >> beam.Map(_prediction_row([f for f, _ in self._fields])).with_output_types(self.output_type)
        )
        rejected = parsed.rejected | "RejectedRows" >> beam.Map(fb_rows.rejected_to_row).with_output_types(
            REJECTED_ROW_TYPE
        )
        return {"output": predictions, "rejected": rejected}


# Fully-qualified names a Java PythonExternalTransform may construct.
XLANG_CLASSES = {
    "featurebridge.transforms.xlang.AnalyzeAndTransformRows": AnalyzeAndTransformRows,
    "featurebridge.transforms.xlang.TransformRows": TransformRows,
    "featurebridge.transforms.xlang.PredictRows": PredictRows,
}
