"""Apply an analyze output's transform_fn to raw RecordBatches on Beam.

`TransformBatches` is the library's "apply transform_fn" stage: TFT's own
``tft_beam.ReadTransformFn`` + ``tft_beam.TransformDataset`` over Arrow
batches, with TFT's output kept as RecordBatches. The cross-language
`TransformRows` wraps it; a Python pipeline can use it directly::

    transformed = batches | TransformBatches("/data/analyzed")

Input: pa.RecordBatch in ``featurebridge.transforms.io.arrow_schema_for(spec)``
(what `ReadRawData` emits), optionally followed by passthrough columns.
Output: pa.RecordBatch with one list column per transformed feature (TFT's
RecordBatch form: a FixedLen [] feature holds one value per row), followed by
the passthrough columns. Missing values are filled by the policies baked into
the graph; an empty input gives an empty output.
"""

from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam
import pyarrow as pa

from featurebridge.transforms import layout
from featurebridge.transforms.spec import FeatureSpec

__all__ = ["TransformBatches"]


class TransformBatches(beam.PTransform):
    """Raw RecordBatches -> transformed RecordBatches with the transform_fn in `analyzed_dir`.

    Args:
      analyzed_dir: a `featurebridge analyze` output (read when the pipeline is built).
      passthrough: extra input columns (Arrow fields, not graph inputs) that
        TFT copies to the output unchanged, row for row: a key, for example.
      spec: the analyzed spec, when the caller already loaded it.

    Raises:
      ArtifactError: `analyzed_dir` is not an analyze output.
    """

    def __init__(self, analyzed_dir: str, passthrough: Sequence[pa.Field] = (),
                 spec: Optional[FeatureSpec] = None):
        super().__init__()
        self._dir = analyzed_dir
        self._spec = spec or layout.load_analyzed(analyzed_dir).spec
        self._passthrough = list(passthrough)

    def expand(self, batches):
        import tensorflow_transform.beam as tft_beam

        from featurebridge.transforms.analyze import tensor_adapter_config

        config = tensor_adapter_config(self._spec, self._passthrough)
        with tft_beam.Context(passthrough_keys={f.name for f in self._passthrough}):
            transform_fn = batches.pipeline | "ReadTransformFn" >> tft_beam.ReadTransformFn(self._dir)
            transformed, _ = ((batches, config), transform_fn) | "TransformDataset" >> tft_beam.TransformDataset(
                output_record_batches=True
            )
        # TFT emits (RecordBatch, unary passthrough values); ours are per row, in the batch.
        return transformed | "Batches" >> beam.Map(lambda pair: pair[0])
