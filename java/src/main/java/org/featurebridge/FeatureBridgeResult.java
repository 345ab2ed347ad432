package org.featurebridge;

import java.util.Map;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PInput;
import org.apache.beam.sdk.values.POutput;
import org.apache.beam.sdk.values.PValue;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;

/**
 * What a featurebridge stage returns: the {@link #getOutput() output} Rows and the {@link
 * #getRejected() rejected} Rows. Both PCollections carry a Row schema (the service's row coder).
 */
public final class FeatureBridgeResult implements POutput {
  /** Tag of {@link #getOutput()}. */
  public static final TupleTag<Row> OUTPUT_TAG = new TupleTag<>(Stage.OUTPUT);
  /** Tag of {@link #getRejected()}. */
  public static final TupleTag<Row> REJECTED_TAG = new TupleTag<>(Stage.REJECTED);

  private final Pipeline pipeline;
  private final PCollection<Row> output;
  private final PCollection<Row> rejected;

  FeatureBridgeResult(Pipeline pipeline, PCollection<Row> output, PCollection<Row> rejected) {
    this.pipeline = pipeline;
    this.output = output;
    this.rejected = rejected;
  }

  /**
   * The stage's result Rows: for analyze-and-transform and transform the key column (if the spec
   * has one) and the transformed features (and label); for predict the key column, {@code
   * input_source}, {@code input_row} and the model's outputs. Rows that were rejected are not here.
   */
  public PCollection<Row> getOutput() {
    return output;
  }

  /**
   * Rows the stage could not use, one per input row: {@code source} (the batch), {@code row}
   * (1-based within it), {@code column}, {@code value} (both nullable) and {@code reason}.
   */
  public PCollection<Row> getRejected() {
    return rejected;
  }

  @Override
  public Pipeline getPipeline() {
    return pipeline;
  }

  @Override
  public Map<TupleTag<?>, PValue> expand() {
    return Map.of(OUTPUT_TAG, output, REJECTED_TAG, rejected);
  }

  @Override
  public void finishSpecifyingOutput(
      String transformName, PInput input, PTransform<?, ?> transform) {}
}
