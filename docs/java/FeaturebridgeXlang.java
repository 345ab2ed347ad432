// NOT COMPILED HERE: the machines featurebridge is built on have Java 17 and Maven
// but cannot fetch Beam's Java jars (no Maven Central). Written against Beam Java 2.77.0 (APIs and the
// vendored gRPC package checked against Beam's sources, not by a compiler); the wire
// protocol it relies on is exercised by tests/test_expansion_*.py with Beam's Python
// client classes. See docs/java/README.md.
package com.example;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.beam.model.pipeline.v1.ExternalTransforms;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.coders.CoderException;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.extensions.python.PythonExternalTransform;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.Validation;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.SchemaTranslation;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.SimpleFunction;
import org.apache.beam.sdk.util.CoderUtils;
import org.apache.beam.sdk.util.construction.External;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.PInput;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;
// Beam's model protos are generated against Beam's *vendored* protobuf, so the
// SchemaTransformPayload builder takes this ByteString, not com.google.protobuf's.
// Beam 2.77 vendors gRPC 1.69.0 (beam-vendor-grpc-1_69_0, a transitive dependency of
// beam-sdks-java-core); if you build against a Beam whose External.java imports another
// org.apache.beam.vendor.grpc.v1pNNpN package, change this line to match.
import org.apache.beam.vendor.grpc.v1p69p0.com.google.protobuf.ByteString;

/**
 * Reads raw CSV lines, turns them into Rows with the feature spec's raw columns, and
 * calls each of featurebridge's three Python stages through the expansion service in
 * both ways the service offers them:
 *
 * <ul>
 *   <li>by class name, with {@link PythonExternalTransform} (URN {@code
 *       beam:transforms:python:fully_qualified_named}; the configuration fields are the
 *       keyword arguments) — {@link #viaClassName};
 *   <li>by SchemaTransform identifier, with a {@code SchemaTransformPayload} sent through
 *       {@link External} (URN {@code beam:expansion:payload:schematransform:v1}) — {@link
 *       #viaIdentifier}.
 * </ul>
 *
 * <p>Both reach the same allowlist entry on the service (expansion_service/registry.py),
 * with the same validation and the same outputs ({@code output}, {@code rejected}). A real
 * job picks one way per stage; this example runs both, so it runs analyze-and-transform
 * twice, into two output directories.
 *
 * <p>The transform and predict stages read an existing analyze output / trained model
 * when the pipeline is constructed (the service loads it to type the outputs), so they
 * run only when {@code --analyzedDir} / {@code --modelDir} name earlier outputs.
 *
 * <p>The example spec has columns session_id (string, the key), purchased (int, the
 * label), age (float), device (string). Adapt RAW_SCHEMA and ParseCsv to your spec.
 */
public class FeaturebridgeXlang {

  public interface Options extends PipelineOptions {
    @Description("host:port of `featurebridge expansion-service` (run it on this host)")
    @Default.String("localhost:8097")
    String getExpansionService();

    void setExpansionService(String value);

    @Description("feature spec file (YAML or JSON) on this host; its text is sent as `spec`")
    @Validation.Required
    String getSpec();

    void setSpec(String value);

    @Description("raw CSV input (header: session_id,purchased,age,device), read by the Java steps")
    @Validation.Required
    String getInput();

    void setInput(String value);

    @Description(
        "existing directory, absolute path on the filesystem every Python worker mounts; "
            + "analyze writes <analyzeRoot>/analyzed-via-class and <analyzeRoot>/analyzed-via-id, "
            + "which must not exist yet")
    @Validation.Required
    String getAnalyzeRoot();

    void setAnalyzeRoot(String value);

    @Description("prefix of the text files the Java steps write (one set per stage, way and tag)")
    @Validation.Required
    String getRowsOutput();

    void setRowsOutput(String value);

    @Description("optional: an earlier analyze output (absolute path) for the transform stage")
    @Default.String("")
    String getAnalyzedDir();

    void setAnalyzedDir(String value);

    @Description("optional: a `featurebridge train` output (absolute path) for the predict stage")
    @Default.String("")
    String getModelDir();

    void setModelDir(String value);
  }

  /** One featurebridge stage and the two names it is offered under. */
  enum Stage {
    ANALYZE_AND_TRANSFORM(
        "beam:schematransform:org.featurebridge:analyze_and_transform:v1",
        "transforms.xlang.AnalyzeAndTransformRows"),
    TRANSFORM(
        "beam:schematransform:org.featurebridge:transform:v1", "transforms.xlang.TransformRows"),
    PREDICT("beam:schematransform:org.featurebridge:predict:v1", "transforms.xlang.PredictRows");

    final String identifier;
    final String className;

    Stage(String identifier, String className) {
      this.identifier = identifier;
      this.className = className;
    }
  }

  static final String SCHEMA_TRANSFORM_URN = "beam:expansion:payload:schematransform:v1";
  /** The input name every stage's SchemaTransform declares. */
  static final String INPUT_TAG = "input";
  /** The outputs every stage returns, whichever way it is called. */
  static final String[] OUTPUT_TAGS = {"output", "rejected"};

  static final String CSV_HEADER = "session_id,purchased,age,device";

  // One nullable field per raw column, named as in the spec.
  static final Schema RAW_SCHEMA =
      Schema.builder()
          .addNullableField("session_id", Schema.FieldType.STRING)
          .addNullableField("purchased", Schema.FieldType.INT64)
          .addNullableField("age", Schema.FieldType.DOUBLE)
          .addNullableField("device", Schema.FieldType.STRING)
          .build();

  /** CSV line -> Row; skips the header and blank lines; an empty field is null (missing). */
  static class ParseCsv extends DoFn<String, Row> {
    @ProcessElement
    public void processElement(@Element String line, OutputReceiver<Row> out) {
      if (line.isBlank() || line.trim().equals(CSV_HEADER)) {
        return;
      }
      String[] f = line.split(",", -1);
      if (f.length != 4) {
        throw new IllegalArgumentException(
            "expected 4 comma-separated fields (" + CSV_HEADER + "), got " + f.length + ": " + line);
      }
      out.output(
          Row.withSchema(RAW_SCHEMA)
              .addValues(
                  blankToNull(f[0]),
                  f[1].isBlank() ? null : Long.valueOf(f[1].trim()),
                  f[2].isBlank() ? null : Double.valueOf(f[2].trim()),
                  blankToNull(f[3]))
              .build());
    }

    private static String blankToNull(String s) {
      return s.isBlank() ? null : s;
    }
  }

  static class RowToString extends SimpleFunction<Row, String> {
    @Override
    public String apply(Row row) {
      return row.toString();
    }
  }

  /** An ordered configuration: name, value, name, value, ... (all strings). */
  static Map<String, String> config(String... namesAndValues) {
    Map<String, String> config = new LinkedHashMap<>();
    for (int i = 0; i + 1 < namesAndValues.length; i += 2) {
      config.put(namesAndValues[i], namesAndValues[i + 1]);
    }
    return config;
  }

  /**
   * Way 1: PythonExternalTransform with the allowlisted class name. The configuration
   * fields are passed as keyword arguments (strings); nothing else is accepted.
   */
  static PCollectionTuple viaClassName(
      PCollection<Row> rows, String step, Stage stage, Map<String, String> config, String service) {
    Map<String, Object> kwargs = new LinkedHashMap<>(config);
    return rows.apply(
        step,
        PythonExternalTransform.<PCollection<Row>, PCollectionTuple>from(stage.className, service)
            .withKwargs(kwargs));
  }

  /**
   * Way 2: the SchemaTransform identifier. Beam Java has no client wrapper for applying a
   * SchemaTransform of a foreign expansion service by identifier, so this sends the
   * SchemaTransformPayload itself through {@link External}, as Python's
   * SchemaAwareExternalTransform and Beam YAML do.
   */
  static PCollectionTuple viaIdentifier(
      PCollection<Row> rows, String step, Stage stage, Map<String, String> config, String service)
      throws CoderException {
    PTransform<PInput, PCollectionTuple> expand =
        External.of(SCHEMA_TRANSFORM_URN, schemaTransformPayload(stage.identifier, config), service)
            .withMultiOutputs();
    return PCollectionTuple.of(INPUT_TAG, rows).apply(step, expand);
  }

  /**
   * A serialized SchemaTransformPayload: the identifier, the configuration schema (one
   * STRING field per entry, in order) and the configuration Row encoded with the portable
   * row coder.
   */
  static byte[] schemaTransformPayload(String identifier, Map<String, String> config)
      throws CoderException {
    Schema.Builder fields = Schema.builder();
    for (String name : config.keySet()) {
      fields.addStringField(name);
    }
    Schema schema = fields.build();
    Row row = Row.withSchema(schema).addValues(config.values().toArray()).build();
    byte[] encodedRow = CoderUtils.encodeToByteArray(RowCoder.of(schema), row);
    return ExternalTransforms.SchemaTransformPayload.newBuilder()
        .setIdentifier(identifier)
        .setConfigurationSchema(SchemaTranslation.schemaToProto(schema, true))
        .setConfigurationRow(ByteString.copyFrom(encodedRow))
        .build()
        .toByteArray();
  }

  /** Writes a stage's {@code output} and {@code rejected} Rows as text. */
  static void writeRows(PCollectionTuple result, String step, String prefix) {
    for (String tag : OUTPUT_TAGS) {
      result
          .get(new TupleTag<Row>(tag))
          .apply(step + "-" + tag + "-ToText", MapElements.via(new RowToString()))
          .apply(step + "-" + tag + "-Write", TextIO.write().to(prefix + "-" + tag));
    }
  }

  public static void main(String[] args) throws IOException {
    Options options = PipelineOptionsFactory.fromArgs(args).withValidation().as(Options.class);
    String service = options.getExpansionService();
    String spec =
        new String(Files.readAllBytes(Paths.get(options.getSpec())), StandardCharsets.UTF_8);
    String root = options.getAnalyzeRoot();
    String out = options.getRowsOutput();

    Pipeline p = Pipeline.create(options);
    PCollection<Row> raw =
        p.apply("ReadCsv", TextIO.read().from(options.getInput()))
            .apply("ParseCsv", ParDo.of(new ParseCsv()))
            .setRowSchema(RAW_SCHEMA);

    // 1. Analyze-and-transform (config: spec, output_dir), both ways: two analyze passes,
    //    each into its own new directory.
    Stage analyze = Stage.ANALYZE_AND_TRANSFORM;
    writeRows(
        viaClassName(
            raw,
            "AnalyzeViaClass",
            analyze,
            config("spec", spec, "output_dir", Paths.get(root, "analyzed-via-class").toString()),
            service),
        "AnalyzeViaClass",
        out + "/analyze-via-class");
    writeRows(
        viaIdentifier(
            raw,
            "AnalyzeViaId",
            analyze,
            config("spec", spec, "output_dir", Paths.get(root, "analyzed-via-id").toString()),
            service),
        "AnalyzeViaId",
        out + "/analyze-via-id");

    // 2. Transform with an existing transform_fn (config: analyzed_dir), both ways.
    if (!options.getAnalyzedDir().isEmpty()) {
      Map<String, String> transformConfig = config("analyzed_dir", options.getAnalyzedDir());
      writeRows(
          viaClassName(raw, "TransformViaClass", Stage.TRANSFORM, transformConfig, service),
          "TransformViaClass",
          out + "/transform-via-class");
      writeRows(
          viaIdentifier(raw, "TransformViaId", Stage.TRANSFORM, transformConfig, service),
          "TransformViaId",
          out + "/transform-via-id");
    }

    // 3. Predict with an exported model (config: model_dir), both ways.
    if (!options.getModelDir().isEmpty()) {
      Map<String, String> predictConfig = config("model_dir", options.getModelDir());
      writeRows(
          viaClassName(raw, "PredictViaClass", Stage.PREDICT, predictConfig, service),
          "PredictViaClass",
          out + "/predict-via-class");
      writeRows(
          viaIdentifier(raw, "PredictViaId", Stage.PREDICT, predictConfig, service),
          "PredictViaId",
          out + "/predict-via-id");
    }

    p.run().waitUntilFinish();
  }
}
