package org.featurebridge;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.beam.model.pipeline.v1.ExternalTransforms.SchemaTransformPayload;
import org.apache.beam.model.pipeline.v1.SchemaApi;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.SchemaTranslation;
import org.apache.beam.sdk.util.CoderUtils;
import org.apache.beam.sdk.values.Row;
import org.junit.Test;

/** The SchemaTransformPayload built from a published configuration schema; no server needed. */
public class SchemaTransformPayloadsTest {
  /** A configuration schema as the service publishes it: STRING fields, with a schema id. */
  private static SchemaApi.Schema published(String... fields) {
    Schema.Builder builder = Schema.builder();
    for (String field : fields) {
      builder.addStringField(field);
    }
    Schema schema = builder.build();
    schema.setUUID(java.util.UUID.fromString("00000000-0000-0000-0000-00000000fb01"));
    return SchemaTranslation.schemaToProto(schema, true);
  }

  @Test
  public void payloadCarriesTheIdentifierThePublishedSchemaAndTheEncodedRow() throws Exception {
    SchemaApi.Schema configSchema = published("spec", "output_dir");
    Map<String, String> config = new LinkedHashMap<>();
    config.put("output_dir", "/data/out"); // deliberately not in the schema's order
    config.put("spec", "columns: []");

    byte[] bytes =
        SchemaTransformPayloads.payload(
            Stage.ANALYZE_AND_TRANSFORM.identifier(), configSchema, config);

    SchemaTransformPayload payload = SchemaTransformPayload.parseFrom(bytes);
    assertEquals(Stage.ANALYZE_AND_TRANSFORM.identifier(), payload.getIdentifier());
    assertEquals(configSchema, payload.getConfigurationSchema());
    Schema schema = SchemaTranslation.schemaFromProto(payload.getConfigurationSchema());
    Row row =
        CoderUtils.decodeFromByteArray(
            RowCoder.of(schema), payload.getConfigurationRow().toByteArray());
    assertEquals("columns: []", row.getString("spec"));
    assertEquals("/data/out", row.getString("output_dir"));
    assertEquals("columns: []", row.getValue(0)); // the schema's order, not the map's
  }

  @Test
  public void fieldsMustMatchTheServiceSchema() {
    SchemaApi.Schema configSchema = published("analyzed_dir", "batch_size");
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                SchemaTransformPayloads.payload(
                    "id", configSchema, Map.of("analyzed_dir", "/a", "extra", "x")));
    assertTrue(e.getMessage(), e.getMessage().contains("not in the schema [extra]"));
    assertTrue(e.getMessage(), e.getMessage().contains("not given [batch_size]"));
  }

  @Test
  public void onlyStringFieldsAreSent() {
    Schema schema = Schema.builder().addInt64Field("model_dir").build();
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () -> SchemaTransformPayloads.configRow(schema, Map.of("model_dir", "/m")));
    assertTrue(e.getMessage(), e.getMessage().contains("strings only"));
  }
}
