package org.featurebridge.examples;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.io.FileSystems;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.io.fs.MatchResult;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.PortablePipelineOptions;
import org.apache.beam.sdk.options.Validation;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.transforms.ToJson;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.featurebridge.FeatureBridge;
import org.featurebridge.FeatureBridgeResult;
import org.featurebridge.LoopbackEnvironment;
import org.featurebridge.RawRows;
import org.featurebridge.RawSchemas;

/**
 * CSV files to featurebridge features (and, given a model, predictions), on a portable runner.
 *
 * <p>Reads the CSV files {@code --input} (header line first, with the spec's raw columns), runs
 * featurebridge's analyze-and-transform with the spec {@code --spec} into {@code
 * <output>/analyzed}, writes the transformed Rows as JSON lines to {@code
 * <output>/features-*.jsonl} and the rejected Rows to {@code <output>/rejected-*.jsonl}; with
 * {@code --model}, also runs that model on the same rows into {@code <output>/predictions-*.jsonl}
 * and {@code <output>/predict-rejected-*.jsonl}.
 *
 * <pre>{@code
 * java -cp "$(cat target/classpath.txt):target/classes" org.featurebridge.examples.CsvToFeatures \
 *     --jobEndpoint=localhost:8099 --defaultEnvironmentType=LOOPBACK \
 *     --expansionService=localhost:8097 --spec=/shared/fb/spec.yaml \
 *     --input='/shared/fb/raw/*.csv' --output=/shared/fb/run1
 * }</pre>
 *
 * <p>CSV values travel as text (every raw field a nullable STRING, {@link RawSchemas#text}): the
 * service parses them with featurebridge's file-reader rules, so empty cells are missing values
 * (handled by the spec's policies) and bad numbers become rejected Rows with a reason.
 */
public final class CsvToFeatures {
  private CsvToFeatures() {}

  /** Command-line options (plus Beam's portable pipeline options such as --jobEndpoint). */
  public interface Options extends PortablePipelineOptions {
    @Description("host:port of featurebridge's expansion service (run it on this host)")
    @Validation.Required
    String getExpansionService();

    void setExpansionService(String value);

    @Description("CSV file(s) to read, a path or glob; the first line of each is the header")
    @Validation.Required
    String getInput();

    void setInput(String value);

    @Description("feature spec file (YAML or JSON) on this host; its text is sent to the service")
    @Validation.Required
    String getSpec();

    void setSpec(String value);

    @Description(
        "absolute directory that must not exist yet, on a filesystem the Python workers share; "
            + "receives analyzed/ and the JSON-lines outputs")
    @Validation.Required
    String getOutput();

    void setOutput(String value);

    @Description("optional: absolute path of a `featurebridge train` output to predict with")
    @Default.String("")
    String getModel();

    void setModel(String value);
  }

  /** Builds the pipeline on {@code pipeline} from {@code options}; returns nothing to wait on. */
  static void build(Pipeline pipeline, Options options, String spec, String header) {
    Schema schema = RawSchemas.text(spec);
    String out = options.getOutput();
    PCollection<Row> raw =
        pipeline
            .apply("ReadCsv", TextIO.read().from(options.getInput()))
            .apply("ParseCsv", RawRows.fromCsv(schema, header));
    FeatureBridgeResult features =
        raw.apply(
            "AnalyzeAndTransform",
            FeatureBridge.analyzeAndTransform(spec, Paths.get(out, "analyzed").toString())
                .withExpansionService(options.getExpansionService()));
    write(features.getOutput(), "Features", out + "/features");
    write(features.getRejected(), "Rejected", out + "/rejected");
    if (!options.getModel().isEmpty()) {
      FeatureBridgeResult predictions =
          raw.apply(
              "Predict",
              FeatureBridge.predict(options.getModel())
                  .withExpansionService(options.getExpansionService()));
      write(predictions.getOutput(), "Predictions", out + "/predictions");
      write(predictions.getRejected(), "PredictRejected", out + "/predict-rejected");
    }
  }

  private static void write(PCollection<Row> rows, String step, String prefix) {
    rows.apply(step + "ToJson", ToJson.of())
        .apply(step + "Write", TextIO.write().to(prefix).withSuffix(".jsonl"));
  }

  /** The first line of the first file {@code input} matches. */
  static String readHeader(String input) throws IOException {
    List<MatchResult.Metadata> files = FileSystems.match(input).metadata();
    if (files.isEmpty()) {
      throw new IllegalArgumentException("--input " + input + " matches no file");
    }
    try (BufferedReader reader =
        new BufferedReader(
            new InputStreamReader(
                Channels.newInputStream(FileSystems.open(files.get(0).resourceId())),
                StandardCharsets.UTF_8))) {
      String header = reader.readLine();
      if (header == null || header.isBlank()) {
        throw new IllegalArgumentException(files.get(0).resourceId() + " has no header line");
      }
      return header.startsWith("\uFEFF") ? header.substring(1) : header;
    }
  }

  public static void main(String[] args) throws IOException {
    PipelineOptionsFactory.register(Options.class);
    List<String> argv = new ArrayList<>(List.of(args));
    if (argv.stream().noneMatch(a -> a.startsWith("--runner="))) {
      argv.add("--runner=PortableRunner"); // Python stages need a portable runner
    }
    Options options =
        PipelineOptionsFactory.fromArgs(argv.toArray(new String[0])).withValidation().as(Options.class);
    if (!Paths.get(options.getOutput()).isAbsolute() || Files.exists(Paths.get(options.getOutput()))) {
      throw new IllegalArgumentException(
          "--output " + options.getOutput() + " must be an absolute path that does not exist yet");
    }
    String spec = Files.readString(Paths.get(options.getSpec()), StandardCharsets.UTF_8);
    LoopbackEnvironment.prepare(options);
    FileSystems.setDefaultPipelineOptions(options);
    Pipeline pipeline = Pipeline.create(options);
    build(pipeline, options, spec, readHeader(options.getInput()));
    PipelineResult.State state = pipeline.run().waitUntilFinish();
    if (state != PipelineResult.State.DONE) {
      throw new IllegalStateException("pipeline finished in state " + state);
    }
  }
}
