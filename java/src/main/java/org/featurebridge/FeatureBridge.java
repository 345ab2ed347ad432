package org.featurebridge;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * featurebridge's stages for Java Beam pipelines, applied through featurebridge's Python
 * expansion service ({@code featurebridge expansion-service}).
 *
 * <pre>{@code
 * FeatureBridgeResult result =
 *     rawRows.apply(
 *         FeatureBridge.analyzeAndTransform(specYaml, "/shared/fb/analyzed")
 *             .withExpansionService("localhost:8097"));
 * result.getOutput();   // transformed Rows
 * result.getRejected(); // Rows the spec rejects, with reasons
 * }</pre>
 *
 * <p>Every stage takes Rows with one nullable field per raw column of the spec ({@link
 * RawSchemas}). A null field is a missing value: it is filled by the column's missing-value policy
 * ({@code mean}, {@code median}, {@code most_frequent}, {@code constant}) or, with {@code reject}
 * (the default, and always for the label and key), the row goes to {@code rejected}. Rows with an
 * unusable value also go to {@code rejected}; they never fail the pipeline.
 *
 * <p>Paths are read and written by the Python workers and checked by the service: they must be
 * absolute paths on a filesystem the workers and the service share. The pipeline must run on a
 * portable runner ({@code --runner=PortableRunner --jobEndpoint=...}).
 */
public final class FeatureBridge {
  private FeatureBridge() {}

  /**
   * One full analyze pass over the input Rows (writing transform_fn/, transformed/, rejected/,
   * constants.json and manifest.json into {@code outputDir}), then the new transform_fn applied to
   * them. {@code output}: the key column (if any), each transformed feature and the transformed
   * label. Null input values are missing values handled by the spec's policies; rows with a missing
   * label or a value the spec rejects go to {@code rejected}. The pipeline fails if no row is
   * usable.
   *
   * @param spec the feature spec as YAML or JSON text (not a file name)
   * @param outputDir absolute path that must not exist yet (the service refuses an existing one)
   * @throws IllegalArgumentException {@code spec} is null or blank, or {@code outputDir} is null,
   *     blank, relative, a URL or has {@code ..} segments
   */
  public static FeatureBridgeTransform analyzeAndTransform(String spec, String outputDir) {
    return new FeatureBridgeTransform(
        Stage.ANALYZE_AND_TRANSFORM,
        config(
            "spec", Arguments.requireText(spec, "spec"),
            "output_dir", Arguments.requireAbsolutePath(outputDir, "outputDir")));
  }

  /**
   * The transform_fn of an earlier analyze output applied to raw Rows. {@code output}: the key
   * column (if any), then each transformed feature in name order (the label only if the input has
   * its field). Null input values are missing values filled by the policies baked into the
   * transform_fn; values the spec rejects send their row to {@code rejected}.
   *
   * @param analyzedDir absolute path of an existing analyze output ({@code featurebridge analyze
   *     --output}, or an earlier {@link #analyzeAndTransform} output directory); the service loads
   *     it when the pipeline is constructed
   * @throws IllegalArgumentException {@code analyzedDir} is null, blank, relative, a URL or has
   *     {@code ..} segments
   */
  public static FeatureBridgeTransform transform(String analyzedDir) {
    return new FeatureBridgeTransform(
        Stage.TRANSFORM,
        config("analyzed_dir", Arguments.requireAbsolutePath(analyzedDir, "analyzedDir")));
  }

  /**
   * The exported serving model run on raw Rows (no label needed). {@code output}: the key column
   * (if any), {@code input_source}, {@code input_row}, then {@code probability}, {@code class_id}
   * and {@code class_name} (binary), {@code probabilities}, {@code class_id} and {@code
   * class_name} (multiclass) or {@code prediction} (regression). Null input values are missing values filled inside the model by the
   * spec's policies; values the spec rejects send their row to {@code rejected}.
   *
   * @param modelDir absolute path of an existing {@code featurebridge train} output (or its
   *     serving/); the service loads it when the pipeline is constructed
   * @throws IllegalArgumentException {@code modelDir} is null, blank, relative, a URL or has
   *     {@code ..} segments
   */
  public static FeatureBridgeTransform predict(String modelDir) {
    return new FeatureBridgeTransform(
        Stage.PREDICT, config("model_dir", Arguments.requireAbsolutePath(modelDir, "modelDir")));
  }

  private static Map<String, String> config(String... namesAndValues) {
    Map<String, String> config = new LinkedHashMap<>();
    for (int i = 0; i < namesAndValues.length; i += 2) {
      config.put(namesAndValues[i], namesAndValues[i + 1]);
    }
    return config;
  }
}
