package org.featurebridge;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.junit.Assume.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.transforms.ToJson;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.joda.time.Duration;
import org.junit.Test;

/**
 * One Java pipeline on a real engine (a portable job server: Flink's or Spark's) that calls all of
 * featurebridge's stages through the expansion service, both call styles included. Run by {@code
 * tests/test_java_engines.py}, which supplies the servers and the input rows and compares what this
 * writes with the in-process Python results; skipped unless the system properties below are set.
 *
 * <ul>
 *   <li>{@code featurebridge.expansionService}, {@code featurebridge.jobEndpoint}: host:port;
 *   <li>{@code featurebridge.spec}, {@code featurebridge.rows}: spec file and JSON-lines raw rows;
 *   <li>{@code featurebridge.out}: directory for the JSON-lines outputs ({@code <stage>_output.jsonl},
 *       {@code <stage>_rejected.jsonl});
 *   <li>{@code featurebridge.analyzeDir}: the new analyze output directory (SchemaTransform id);
 *   <li>optional {@code featurebridge.analyzedDir}: an existing analyze output for the transform
 *       stage (Python class name);
 *   <li>optional {@code featurebridge.modelDir}, {@code featurebridge.predictSpec}, {@code
 *       featurebridge.predictRows}: a model, its spec and rows for the predict stage (Python class
 *       name);
 *   <li>optional {@code featurebridge.parallelism} (default 2), {@code featurebridge.timeoutSeconds}
 *       (default 600; the job is cancelled and the test fails after it).
 * </ul>
 */
public class FeatureBridgeEngineIT {

  /** Flink reads its parallelism from the submitted options; declared so the parser accepts it. */
  public interface EngineOptions extends PipelineOptions {
    @Description("engine parallelism (read by the Flink job server)")
    @Default.Integer(2)
    Integer getParallelism();

    void setParallelism(Integer value);
  }

  private static String property(String name) {
    String value = System.getProperty("featurebridge." + name);
    return value == null || value.isBlank() ? null : value;
  }

  private static String required(String name) {
    String value = property(name);
    if (value == null) {
      throw new IllegalArgumentException("system property featurebridge." + name + " is not set");
    }
    return value;
  }

  private static int timeoutSeconds() {
    return Integer.parseInt(property("timeoutSeconds") == null ? "600" : property("timeoutSeconds"));
  }

  private static String read(String path) throws IOException {
    return Files.readString(Paths.get(path), StandardCharsets.UTF_8);
  }

  private static PCollection<Row> rows(Pipeline p, String step, String rowsPath, Schema schema) {
    return p.apply(step + "Read", TextIO.read().from(rowsPath))
        .apply(step + "Parse", RawRows.fromJsonLines(schema));
  }

  private static void write(FeatureBridgeResult result, String stage, Path out, List<Path> files) {
    for (String tag : List.of(Stage.OUTPUT, Stage.REJECTED)) {
      Path file = out.resolve(stage + "_" + tag + ".jsonl");
      files.add(file);
      PCollection<Row> rows = tag.equals(Stage.OUTPUT) ? result.getOutput() : result.getRejected();
      rows.apply(stage + "-" + tag + "-Json", ToJson.of())
          .apply(stage + "-" + tag + "-Write", TextIO.write().to(file.toString()).withoutSharding());
    }
  }

  @Test
  public void allStagesOnOneEngineRun() throws IOException {
    String service = property("expansionService");
    String jobEndpoint = property("jobEndpoint");
    assumeTrue(
        "set -Dfeaturebridge.expansionService and -Dfeaturebridge.jobEndpoint to run",
        service != null && jobEndpoint != null);
    Path out = Paths.get(required("out"));
    Files.createDirectories(out);
    String parallelism = property("parallelism") == null ? "2" : property("parallelism");
    PipelineOptions options =
        PipelineOptionsFactory.fromArgs(
                "--runner=PortableRunner",
                "--jobEndpoint=" + jobEndpoint,
                "--defaultEnvironmentType=LOOPBACK",
                "--experiments=beam_fn_api",
                "--parallelism=" + parallelism)
            .withValidation()
            .as(EngineOptions.class);
    LoopbackEnvironment.prepare(options);
    Pipeline p = Pipeline.create(options);
    List<Path> files = new ArrayList<>();

    String spec = read(required("spec"));
    PCollection<Row> raw = rows(p, "Rows", required("rows"), RawSchemas.typed(spec));
    write(
        raw.apply(
            "AnalyzeViaId",
            FeatureBridge.analyzeAndTransform(spec, required("analyzeDir"))
                .withExpansionService(service)
                .withCallStyle(CallStyle.SCHEMA_TRANSFORM)),
        "analyze",
        out,
        files);
    if (property("analyzedDir") != null) {
      write(
          raw.apply(
              "TransformViaClass",
              FeatureBridge.transform(property("analyzedDir"))
                  .withExpansionService(service)
                  .withCallStyle(CallStyle.PYTHON_CLASS)),
          "transform",
          out,
          files);
    }
    if (property("modelDir") != null) {
      Schema predictSchema = RawSchemas.typed(read(required("predictSpec")));
      write(
          rows(p, "PredictRows", required("predictRows"), predictSchema)
              .apply(
                  "PredictViaClass",
                  FeatureBridge.predict(property("modelDir"))
                      .withExpansionService(service)
                      .withCallStyle(CallStyle.PYTHON_CLASS)),
          "predict",
          out,
          files);
    }

    long timeout = timeoutSeconds();
    long started = System.nanoTime();
    PipelineResult result = p.run();
    PipelineResult.State state = result.waitUntilFinish(Duration.standardSeconds(timeout));
    if (state == null || !state.isTerminal()) {
      try {
        result.cancel();
      } finally {
        fail("the engine run did not finish within " + timeout + " s (state " + state + ")");
      }
    }
    System.out.printf(
        "featurebridge engine run: %s in %.1f s%n", state, (System.nanoTime() - started) / 1e9);
    assertEquals(PipelineResult.State.DONE, state);
    for (Path file : files) {
      assertTrue("the pipeline did not write " + file, Files.exists(file));
    }
  }
}
