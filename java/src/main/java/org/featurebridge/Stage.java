package org.featurebridge;

import java.util.List;

/**
 * The three featurebridge stages the expansion service offers, each under two names: a
 * SchemaTransform identifier and a Python class name (both are allowlisted on the service, in
 * {@code expansion_service/registry.py}). Every stage takes one input PCollection of Rows (tag
 * {@value #INPUT}) and returns the PCollections {@value #OUTPUT} and {@value #REJECTED}.
 */
public enum Stage {
  /** One full analyze pass, then the new transform_fn applied; config {@code spec, output_dir}. */
  ANALYZE_AND_TRANSFORM(
      "beam:schematransform:org.featurebridge:analyze_and_transform:v1",
      "featurebridge.transforms.xlang.AnalyzeAndTransformRows",
      List.of("spec", "output_dir")),
  /** An existing transform_fn applied to raw Rows; config {@code analyzed_dir}. */
  TRANSFORM(
      "beam:schematransform:org.featurebridge:transform:v1",
      "featurebridge.transforms.xlang.TransformRows",
      List.of("analyzed_dir")),
  /** The exported serving model run on raw Rows; config {@code model_dir}. */
  PREDICT(
      "beam:schematransform:org.featurebridge:predict:v1",
      "featurebridge.transforms.xlang.PredictRows",
      List.of("model_dir"));

  /** The input tag every stage's SchemaTransform declares. */
  public static final String INPUT = "input";
  /** The tag of the transformed (or predicted) Rows. */
  public static final String OUTPUT = "output";
  /** The tag of the rejected Rows {@code (source, row, column, value, reason)}. */
  public static final String REJECTED = "rejected";

  private final String identifier;
  private final String className;
  private final List<String> configFields;

  Stage(String identifier, String className, List<String> configFields) {
    this.identifier = identifier;
    this.className = className;
    this.configFields = configFields;
  }

  /** The SchemaTransform identifier, {@code beam:schematransform:org.featurebridge:...:v1}. */
  public String identifier() {
    return identifier;
  }

  /** The fully qualified Python class name {@code PythonExternalTransform} constructs. */
  public String className() {
    return className;
  }

  /** The configuration fields (all strings), in the service's order. */
  public List<String> configFields() {
    return configFields;
  }
}
