package org.featurebridge;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import org.apache.beam.model.expansion.v1.ExpansionApi.SchemaTransformConfig;
import org.apache.beam.sdk.extensions.python.PythonExternalTransform;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.util.construction.External;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.POutput;
import org.apache.beam.sdk.values.Row;

/**
 * One featurebridge stage applied through the expansion service: raw Rows in, {@link
 * FeatureBridgeResult} ({@code output} and {@code rejected} Rows) out. Made by {@link
 * FeatureBridge}; immutable, each {@code with...} returns a copy.
 *
 * <p>The input PCollection must have a Row schema with one field per raw column of the feature
 * spec, named as in the spec (see {@link RawSchemas}); extra fields are ignored. Null field values
 * are missing values, handled by each column's missing-value policy in the spec. Rows the stage
 * cannot use (a bad number, a missing value whose policy is {@code reject}) go to {@code
 * rejected}, never to {@code output}, and do not fail the pipeline.
 */
public final class FeatureBridgeTransform extends PTransform<PCollection<Row>, FeatureBridgeResult> {
  private final Stage stage;
  private final Map<String, String> config;
  private final String expansionService;
  private final CallStyle callStyle;

  FeatureBridgeTransform(Stage stage, Map<String, String> config) {
    this(stage, config, null, CallStyle.SCHEMA_TRANSFORM);
  }

  private FeatureBridgeTransform(
      Stage stage, Map<String, String> config, String expansionService, CallStyle callStyle) {
    this.stage = stage;
    this.config = Collections.unmodifiableMap(new LinkedHashMap<>(config));
    this.expansionService = expansionService;
    this.callStyle = callStyle;
  }

  /**
   * The featurebridge expansion service to call, {@code host:port} (required). Run the service on
   * the launcher's host and pass {@code localhost:PORT}: Beam's client opens a plain-text channel.
   *
   * @throws IllegalArgumentException null, blank or not {@code host:port}
   */
  public FeatureBridgeTransform withExpansionService(String hostPort) {
    return new FeatureBridgeTransform(
        stage, config, Arguments.requireHostPort(hostPort, "withExpansionService"), callStyle);
  }

  /**
   * How to reach the stage (default {@link CallStyle#SCHEMA_TRANSFORM}); both give the same result.
   *
   * @throws NullPointerException {@code style} is null
   */
  public FeatureBridgeTransform withCallStyle(CallStyle style) {
    return new FeatureBridgeTransform(
        stage, config, expansionService, Objects.requireNonNull(style, "withCallStyle: style"));
  }

  /** The stage this transform applies. */
  public Stage getStage() {
    return stage;
  }

  /** The stage's configuration (field name to value), in the service's field order. */
  public Map<String, String> getConfig() {
    return config;
  }

  /** The expansion service address, or null if {@link #withExpansionService} was not called. */
  public String getExpansionService() {
    return expansionService;
  }

  /** The call style. */
  public CallStyle getCallStyle() {
    return callStyle;
  }

  /**
   * Expands the stage through the service (at pipeline construction time).
   *
   * @throws IllegalStateException no expansion service was set, or the service cannot be reached
   *     or does not offer the stage
   * @throws RuntimeException the service refused the configuration (e.g. {@code output_dir}
   *     exists, {@code analyzed_dir} is no analyze output); the message carries the service's
   *     reason
   */
  @Override
  public FeatureBridgeResult expand(PCollection<Row> input) {
    if (expansionService == null) {
      throw new IllegalStateException(
          getName() + ": call withExpansionService(\"host:port\") with the address of "
              + "featurebridge's expansion service before applying the " + stage + " stage");
    }
    if (LoopbackEnvironment.needsAddress(input.getPipeline().getOptions())) {
      throw new IllegalStateException(
          getName() + ": --defaultEnvironmentType=LOOPBACK needs an address before cross-language "
              + "transforms are expanded; call LoopbackEnvironment.prepare(options) before "
              + "Pipeline.create, or pass --defaultEnvironmentConfig=localhost:<free port>");
    }
    if (!input.hasSchema()) {
      throw new IllegalArgumentException(
          getName() + ": the input PCollection has no Row schema; call setRowSchema(...) with "
              + "one nullable field per raw column of the spec (RawSchemas.typed(spec))");
    }
    PCollectionTuple outputs =
        callStyle == CallStyle.SCHEMA_TRANSFORM ? viaSchemaTransform(input) : viaPythonClass(input);
    return new FeatureBridgeResult(
        input.getPipeline(),
        outputs.get(FeatureBridgeResult.OUTPUT_TAG),
        outputs.get(FeatureBridgeResult.REJECTED_TAG));
  }

  private PCollectionTuple viaSchemaTransform(PCollection<Row> input) {
    SchemaTransformConfig discovered =
        SchemaTransformDiscovery.configOf(expansionService, stage.identifier());
    byte[] payload =
        SchemaTransformPayloads.payload(
            stage.identifier(), discovered.getConfigSchema(), config);
    return PCollectionTuple.of(Stage.INPUT, input)
        .apply(
            "SchemaTransform",
            External.of(SchemaTransformPayloads.URN, payload, expansionService)
                .withMultiOutputs());
  }

  private PCollectionTuple viaPythonClass(PCollection<Row> input) {
    Map<String, Object> kwargs = new LinkedHashMap<>(config);
    POutput out =
        input.apply(
            "PythonClass",
            PythonExternalTransform.<PCollection<Row>, POutput>from(
                    stage.className(), expansionService)
                .withKwargs(kwargs));
    if (!(out instanceof PCollectionTuple)) {
      throw new IllegalStateException(
          stage.className() + " returned " + out.expand().keySet() + ", expected the outputs "
              + Stage.OUTPUT + " and " + Stage.REJECTED);
    }
    return (PCollectionTuple) out;
  }

  @Override
  public String toString() {
    return "FeatureBridgeTransform{" + stage + ", " + callStyle + ", " + expansionService + "}";
  }
}
