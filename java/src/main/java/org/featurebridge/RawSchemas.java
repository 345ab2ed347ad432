package org.featurebridge;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.schemas.Schema;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;

/**
 * The Row schema of a feature spec's raw columns: what every featurebridge stage takes as input.
 * One nullable field per entry of the spec's {@code columns}, in spec order, named as in the spec.
 */
public final class RawSchemas {
  private RawSchemas() {}

  /**
   * Typed fields: spec {@code float} is {@code DOUBLE}, {@code int} is {@code INT64}, {@code
   * string} is {@code STRING}; all nullable (null is a missing value).
   *
   * @param spec the feature spec as YAML or JSON text
   * @throws IllegalArgumentException the text is no spec with a {@code columns} list of {@code
   *     {name, type}} entries (the service validates the rest)
   */
  public static Schema typed(String spec) {
    Schema.Builder builder = Schema.builder();
    for (Map.Entry<String, String> column : columns(spec).entrySet()) {
      builder.addNullableField(column.getKey(), fieldType(column.getKey(), column.getValue()));
    }
    return builder.build();
  }

  /**
   * Text fields: every raw column as a nullable {@code STRING}, parsed by the service with the
   * file readers' rules (so a bad number becomes a {@code rejected} Row with a reason rather than
   * a Java exception). Suits CSV and other text input.
   *
   * @param spec the feature spec as YAML or JSON text
   * @throws IllegalArgumentException as {@link #typed}
   */
  public static Schema text(String spec) {
    Schema.Builder builder = Schema.builder();
    for (String name : columns(spec).keySet()) {
      builder.addNullableField(name, Schema.FieldType.STRING);
    }
    return builder.build();
  }

  /** Column name to spec type ({@code float}, {@code int} or {@code string}), in spec order. */
  static Map<String, String> columns(String spec) {
    Arguments.requireText(spec, "spec");
    Object parsed;
    try {
      parsed = new Yaml(new SafeConstructor(new LoaderOptions())).load(spec);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("spec: not valid YAML or JSON: " + e.getMessage(), e);
    }
    if (!(parsed instanceof Map) || !(((Map<?, ?>) parsed).get("columns") instanceof List)) {
      throw new IllegalArgumentException(
          "spec: expected a mapping with a 'columns' list; pass the spec's text, not its file name");
    }
    Map<String, String> columns = new LinkedHashMap<>();
    for (Object entry : (List<?>) ((Map<?, ?>) parsed).get("columns")) {
      Object name = entry instanceof Map ? ((Map<?, ?>) entry).get("name") : null;
      Object type = entry instanceof Map ? ((Map<?, ?>) entry).get("type") : null;
      if (!(name instanceof String) || !(type instanceof String)) {
        throw new IllegalArgumentException(
            "spec: every column needs a string 'name' and 'type'; got " + entry);
      }
      columns.put((String) name, (String) type);
    }
    return columns;
  }

  private static Schema.FieldType fieldType(String column, String type) {
    switch (type) {
      case "float":
        return Schema.FieldType.DOUBLE;
      case "int":
        return Schema.FieldType.INT64;
      case "string":
        return Schema.FieldType.STRING;
      default:
        throw new IllegalArgumentException(
            "spec: column " + column + " has type '" + type + "'; allowed: float, int, string");
    }
  }
}
