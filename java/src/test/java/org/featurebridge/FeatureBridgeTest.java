package org.featurebridge;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.List;
import java.util.Map;
import org.apache.beam.runners.portability.PortableRunner;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.PortablePipelineOptions;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.junit.Test;

/** Argument validation and configuration of the public API; no server needed. */
public class FeatureBridgeTest {
  private static final String SPEC = "columns: [{name: x, type: float, transforms: [zscore]}]";

  @Test
  public void stagesCarryTheirConfigurationInServiceOrder() {
    FeatureBridgeTransform t = FeatureBridge.analyzeAndTransform(SPEC, "/data/out");
    assertEquals(Stage.ANALYZE_AND_TRANSFORM, t.getStage());
    assertEquals(List.of("spec", "output_dir"), List.copyOf(t.getConfig().keySet()));
    assertEquals(Map.of("spec", SPEC, "output_dir", "/data/out"), t.getConfig());
    assertEquals(Map.of("analyzed_dir", "/a"), FeatureBridge.transform("/a").getConfig());
    assertEquals(Map.of("model_dir", "/m"), FeatureBridge.predict("/m").getConfig());
    for (Stage stage : Stage.values()) {
      assertTrue(stage.identifier().startsWith("beam:schematransform:org.featurebridge:"));
      assertTrue(stage.className().startsWith("featurebridge.transforms.xlang."));
    }
  }

  @Test
  public void defaultsAndWithersReturnCopies() {
    FeatureBridgeTransform t = FeatureBridge.predict("/m");
    assertNull(t.getExpansionService());
    assertEquals(CallStyle.SCHEMA_TRANSFORM, t.getCallStyle());
    FeatureBridgeTransform u =
        t.withExpansionService("localhost:8097").withCallStyle(CallStyle.PYTHON_CLASS);
    assertEquals("localhost:8097", u.getExpansionService());
    assertEquals(CallStyle.PYTHON_CLASS, u.getCallStyle());
    assertNull(t.getExpansionService());
    assertEquals(CallStyle.SCHEMA_TRANSFORM, t.getCallStyle());
  }

  @Test
  public void emptySpecIsRefused() {
    for (String spec : new String[] {null, "", "  \n"}) {
      IllegalArgumentException e =
          assertThrows(
              IllegalArgumentException.class, () -> FeatureBridge.analyzeAndTransform(spec, "/o"));
      assertTrue(e.getMessage(), e.getMessage().startsWith("spec must be a non-empty string"));
    }
  }

  @Test
  public void pathsMustBeAbsoluteLocalPaths() {
    String[] bad = {null, "", "relative/dir", "./x", "/data/../etc", "gs://bucket/dir", "s3://b/x"};
    for (String path : bad) {
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> FeatureBridge.transform(path));
      assertTrue(e.getMessage(), e.getMessage().startsWith("analyzedDir"));
      assertThrows(IllegalArgumentException.class, () -> FeatureBridge.predict(path));
      assertThrows(
          IllegalArgumentException.class, () -> FeatureBridge.analyzeAndTransform(SPEC, path));
    }
  }

  @Test
  public void expansionServiceMustBeHostAndPort() {
    FeatureBridgeTransform t = FeatureBridge.transform("/a");
    String[] bad = {null, "", "localhost", "localhost:", ":8097", "localhost:0", "localhost:70000",
        "localhost:port", "http://localhost:8097"};
    for (String address : bad) {
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> t.withExpansionService(address));
      assertTrue(e.getMessage(), e.getMessage().contains("\"host:port\""));
    }
    assertEquals("10.0.0.7:1", t.withExpansionService("10.0.0.7:1").getExpansionService());
    assertThrows(NullPointerException.class, () -> t.withCallStyle(null));
  }

  private static PCollection<Row> rawRows(PipelineOptions options) {
    Schema schema = RawSchemas.typed(SPEC);
    return Pipeline.create(options)
        .apply(Create.of(Row.withSchema(schema).addValue(1.0).build()).withRowSchema(schema));
  }

  private static PipelineOptions portableOptions(String... args) {
    PipelineOptions options = PipelineOptionsFactory.fromArgs(args).create();
    options.setRunner(PortableRunner.class);
    options.as(PortablePipelineOptions.class).setJobEndpoint("localhost:1"); // never called
    return options;
  }

  @Test
  public void applyingWithoutAnExpansionServiceFailsAtConstruction() {
    PCollection<Row> rows = rawRows(portableOptions());
    IllegalStateException e =
        assertThrows(
            IllegalStateException.class,
            () -> rows.apply(FeatureBridge.analyzeAndTransform(SPEC, "/o")));
    assertTrue(e.getMessage(), e.getMessage().contains("withExpansionService(\"host:port\")"));
  }

  @Test
  public void loopbackWithoutAnAddressIsExplainedAndPrepareFixesIt() {
    PipelineOptions options = portableOptions("--defaultEnvironmentType=LOOPBACK");
    assertTrue(LoopbackEnvironment.needsAddress(options));
    PCollection<Row> rows = rawRows(options);
    IllegalStateException e =
        assertThrows(
            IllegalStateException.class,
            () -> rows.apply(FeatureBridge.predict("/m").withExpansionService("localhost:1")));
    assertTrue(e.getMessage(), e.getMessage().contains("LoopbackEnvironment.prepare"));

    LoopbackEnvironment.prepare(options);
    String config = options.as(PortablePipelineOptions.class).getDefaultEnvironmentConfig();
    assertTrue(config, config.matches("localhost:[0-9]+"));
    assertTrue(!LoopbackEnvironment.needsAddress(options));
    assertEquals(
        LoopbackEnvironment.CACHE_MILLIS,
        options.as(PortablePipelineOptions.class).getEnvironmentCacheMillis());
    LoopbackEnvironment.prepare(options);
    assertEquals(config, options.as(PortablePipelineOptions.class).getDefaultEnvironmentConfig());
  }

  @Test
  public void prepareLeavesOtherEnvironmentsAndGivenValuesAlone() {
    PipelineOptions docker = portableOptions("--defaultEnvironmentType=DOCKER");
    LoopbackEnvironment.prepare(docker);
    assertNull(docker.as(PortablePipelineOptions.class).getDefaultEnvironmentConfig());
    assertEquals(0, docker.as(PortablePipelineOptions.class).getEnvironmentCacheMillis());
    PipelineOptions given =
        portableOptions(
            "--defaultEnvironmentType=LOOPBACK",
            "--defaultEnvironmentConfig=localhost:4242",
            "--environmentCacheMillis=5");
    LoopbackEnvironment.prepare(given);
    assertEquals(
        "localhost:4242", given.as(PortablePipelineOptions.class).getDefaultEnvironmentConfig());
    assertEquals(5, given.as(PortablePipelineOptions.class).getEnvironmentCacheMillis());
  }

  @Test
  public void anUnreachableServiceIsReportedWithItsAddress() throws Exception {
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort();
    }
    String address = "localhost:" + port;
    PCollection<Row> rows = rawRows(portableOptions());
    IllegalStateException e =
        assertThrows(
            IllegalStateException.class,
            () -> rows.apply(FeatureBridge.transform("/a").withExpansionService(address)));
    assertTrue(e.getMessage(), e.getMessage().contains("DiscoverSchemaTransform at " + address));
    assertTrue(e.getMessage(), e.getMessage().contains("UNAVAILABLE"));
  }
}
