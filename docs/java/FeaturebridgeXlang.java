// NOT COMPILED HERE: Java, Maven and Beam's Java jars are not available on the
// machines featurebridge is built on. Written against Beam Java 2.77.0; the wire
// protocol it relies on is exercised by tests/test_expansion_*.py with Beam's
// Python client classes. See docs/java/README.md.
package com.example;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import org.apache.beam.model.pipeline.v1.ExternalTransforms;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.extensions.python.PythonExternalTransform;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.SchemaTranslation;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.transforms.SimpleFunction;
import org.apache.beam.sdk.util.construction.External;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;

/**
 * Reads raw CSV lines, turns them into Rows with the feature spec's raw columns, and
 * calls featurebridge's Python stages through the expansion service:
 *
 * <ol>
 *   <li>analyze-and-transform via PythonExternalTransform
 *       ("transforms.xlang.AnalyzeAndTransformRows");
 *   <li>transform with an existing transform_fn via the SchemaTransform identifier
 *       "beam:schematransform:org.featurebridge:transform:v1";
 *   <li>predict via "beam:schematransform:org.featurebridge:predict:v1" (optional).
 * </ol>
 *
 * The example spec has columns session_id (string, the key), purchased (int, the
 * label), age (float), device (string). Adapt RAW_SCHEMA and parse() to your spec.
 */
public class FeaturebridgeXlang {

  public interface Options extends PipelineOptions {
    @Description("host:port of `featurebridge expansion-service` (run it on this host)")
    @Default.String("localhost:8097")
    String getExpansionService();

    void setExpansionService(String value);

    @Description("feature spec file (YAML or JSON); its text is sent as the config")
    String getSpec();

    void setSpec(String value);

    @Description("analyze output directory on a filesystem every worker mounts; must not exist")
    String getOutputDir();

    void setOutputDir(String value);

    @Description("raw CSV input (header: session_id,purchased,age,device)")
    String getInput();

    void setInput(String value);

    @Description("optional: a `featurebridge train` output directory to predict with")
    @Default.String("")
    String getModelDir();

    void setModelDir(String value);
  }

  // One nullable field per raw column, named as in the spec.
  static final Schema RAW_SCHEMA =
      Schema.builder()
          .addNullableField("session_id", Schema.FieldType.STRING)
          .addNullableField("purchased", Schema.FieldType.INT64)
          .addNullableField("age", Schema.FieldType.DOUBLE)
          .addNullableField("device", Schema.FieldType.STRING)
          .build();

  static final String SCHEMA_TRANSFORM_URN = "beam:expansion:payload:schematransform:v1";
  static final String TRANSFORM_ID = "beam:schematransform:org.featurebridge:transform:v1";
  static final String PREDICT_ID = "beam:schematransform:org.featurebridge:predict:v1";

  static class ParseCsv extends SimpleFunction<String, Row> {
    @Override
    public Row apply(String line) {
      String[] f = line.split(",", -1);
      return Row.withSchema(RAW_SCHEMA)
          .addValues(
              blankToNull(f[0]),
              f[1].isBlank() ? null : Long.parseLong(f[1].trim()),
              f[2].isBlank() ? null : Double.parseDouble(f[2].trim()),
              blankToNull(f[3]))
          .build();
    }

    private static String blankToNull(String s) {
      return s.isBlank() ? null : s;
    }
  }

  /** A SchemaTransformPayload with a one-string-field configuration Row. */
  static byte[] schemaTransformPayload(String identifier, String field, String value)
      throws IOException {
    Schema config = Schema.builder().addStringField(field).build();
    Row row = Row.withSchema(config).addValue(value).build();
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    RowCoder.of(config).encode(row, bytes);
    return ExternalTransforms.SchemaTransformPayload.newBuilder()
        .setIdentifier(identifier)
        .setConfigurationSchema(SchemaTranslation.schemaToProto(config, true))
        .setConfigurationRow(com.google.protobuf.ByteString.copyFrom(bytes.toByteArray()))
        .build()
        .toByteArray();
  }

  public static void main(String[] args) throws IOException {
    Options options = PipelineOptionsFactory.fromArgs(args).withValidation().as(Options.class);
    String specText =
        new String(Files.readAllBytes(Paths.get(options.getSpec())), StandardCharsets.UTF_8);
    String service = options.getExpansionService();

    Pipeline p = Pipeline.create(options);
    PCollection<Row> raw =
        p.apply("Read", TextIO.read().from(options.getInput()))
            .apply("Parse", MapElements.via(new ParseCsv()))
            .setRowSchema(RAW_SCHEMA);

    // 1. Analyze-and-transform through PythonExternalTransform (allowlisted class name).
    PCollectionTuple analyzed =
        raw.apply(
            "AnalyzeAndTransform",
            PythonExternalTransform.<PCollection<Row>, PCollectionTuple>from(
                    "transforms.xlang.AnalyzeAndTransformRows", service)
                .withKwarg("spec", specText)
                .withKwarg("output_dir", options.getOutputDir()));
    PCollection<Row> transformed = analyzed.get(new TupleTag<Row>("output"));
    PCollection<Row> rejected = analyzed.get(new TupleTag<Row>("rejected"));
    transformed
        .apply("TransformedToText", MapElements.via(new RowToString()))
        .apply(TextIO.write().to(options.getOutputDir() + "-rows/transformed"));
    rejected
        .apply("RejectedToText", MapElements.via(new RowToString()))
        .apply(TextIO.write().to(options.getOutputDir() + "-rows/rejected"));

    // 2. Transform with an existing transform_fn through the SchemaTransform identifier.
    //    (Here an earlier run's directory: the one above is written by this same job.)
    String previous = options.getOutputDir() + "-previous";
    if (Files.isDirectory(Paths.get(previous))) {
      PCollectionTuple out =
          PCollectionTuple.of("input", raw)
              .apply(
                  "TransformWithExisting",
                  External.of(
                          SCHEMA_TRANSFORM_URN,
                          schemaTransformPayload(TRANSFORM_ID, "analyzed_dir", previous),
                          service)
                      .withMultiOutputs());
      out.get(new TupleTag<Row>("output"))
          .apply("ExistingToText", MapElements.via(new RowToString()))
          .apply(TextIO.write().to(options.getOutputDir() + "-rows/transformed-existing"));
    }

    // 3. Predict with an exported model (raw Rows in, predictions out).
    if (!options.getModelDir().isEmpty()) {
      PCollectionTuple predictions =
          PCollectionTuple.of("input", raw)
              .apply(
                  "Predict",
                  External.of(
                          SCHEMA_TRANSFORM_URN,
                          schemaTransformPayload(PREDICT_ID, "model_dir", options.getModelDir()),
                          service)
                      .withMultiOutputs());
      predictions
          .get(new TupleTag<Row>("output"))
          .apply("PredictionsToText", MapElements.via(new RowToString()))
          .apply(TextIO.write().to(options.getOutputDir() + "-rows/predictions"));
    }

    p.run().waitUntilFinish();
  }

  static class RowToString extends SimpleFunction<Row, String> {
    @Override
    public String apply(Row row) {
      return row.toString();
    }
  }
}
