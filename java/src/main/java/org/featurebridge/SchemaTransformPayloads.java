package org.featurebridge;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.apache.beam.model.pipeline.v1.ExternalTransforms.SchemaTransformPayload;
import org.apache.beam.model.pipeline.v1.SchemaApi;
import org.apache.beam.sdk.coders.CoderException;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.SchemaTranslation;
import org.apache.beam.sdk.util.CoderUtils;
import org.apache.beam.sdk.values.Row;
// Beam's model protos are generated against Beam's vendored protobuf (gRPC 1.60.1 in Beam 2.62).
import org.apache.beam.vendor.grpc.v1p60p1.com.google.protobuf.ByteString;

/**
 * Builds the {@code SchemaTransformPayload} of a SchemaTransform call from the configuration
 * schema the service published (see {@link SchemaTransformDiscovery}), so the configuration Row
 * is encoded exactly as the service expects it.
 */
public final class SchemaTransformPayloads {
  /** The URN of an ExpansionRequest that applies a SchemaTransform by identifier. */
  public static final String URN = "beam:expansion:payload:schematransform:v1";

  private SchemaTransformPayloads() {}

  /**
   * The configuration Row: one value per field of {@code configSchema}, in its order.
   *
   * @throws IllegalArgumentException {@code config} lacks a field of the schema or has one the
   *     schema does not (a client/service version mismatch), a value is null, or a field is not a
   *     STRING
   */
  public static Row configRow(Schema configSchema, Map<String, String> config) {
    TreeSet<String> unknown = new TreeSet<>(config.keySet());
    unknown.removeAll(configSchema.getFieldNames());
    TreeSet<String> missing = new TreeSet<>(configSchema.getFieldNames());
    missing.removeAll(config.keySet());
    if (!unknown.isEmpty() || !missing.isEmpty()) {
      throw new IllegalArgumentException(
          "configuration fields do not match the service's schema " + configSchema.getFieldNames()
              + ": not in the schema " + unknown + ", not given " + missing
              + " (featurebridge-java and the expansion service are of different versions?)");
    }
    List<Object> values = new ArrayList<>();
    for (Schema.Field field : configSchema.getFields()) {
      if (field.getType().getTypeName() != Schema.TypeName.STRING) {
        throw new IllegalArgumentException(
            "configuration field " + field.getName() + " has type " + field.getType()
                + " on the service; this client sends strings only");
      }
      values.add(Arguments.requireText(config.get(field.getName()), field.getName()));
    }
    return Row.withSchema(configSchema).addValues(values).build();
  }

  /**
   * The serialized {@code SchemaTransformPayload}: {@code identifier}, the service's configuration
   * schema as published, and the configuration Row encoded with the portable row coder.
   *
   * @param identifier the SchemaTransform identifier
   * @param configSchema the configuration schema from {@code DiscoverSchemaTransform}
   * @param config field name to value (strings, none null)
   * @throws IllegalArgumentException see {@link #configRow}
   */
  public static byte[] payload(
      String identifier, SchemaApi.Schema configSchema, Map<String, String> config) {
    Schema schema = SchemaTranslation.schemaFromProto(configSchema);
    Row row = configRow(schema, config);
    byte[] encoded;
    try {
      encoded = CoderUtils.encodeToByteArray(RowCoder.of(schema), row);
    } catch (CoderException e) {
      throw new IllegalArgumentException("cannot encode the configuration row " + row, e);
    }
    return SchemaTransformPayload.newBuilder()
        .setIdentifier(identifier)
        .setConfigurationSchema(configSchema)
        .setConfigurationRow(ByteString.copyFrom(encoded))
        .build()
        .toByteArray();
  }
}
