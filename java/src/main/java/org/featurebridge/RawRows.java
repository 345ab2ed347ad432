package org.featurebridge;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;

/**
 * Text lines to raw Rows for a {@link RawSchemas} schema. Blank values and JSON nulls become null
 * fields (missing values); fields absent from the input are null too.
 */
public final class RawRows {
  private static final ObjectMapper JSON = new ObjectMapper();

  private RawRows() {}

  /**
   * Parses CSV lines whose columns are {@code header} (a comma-separated list of names, in file
   * order; quoted fields with doubled quotes are understood, line breaks inside quotes are not).
   * Lines equal to the header and blank lines are skipped. A line with the wrong number of fields,
   * or (for a typed schema) a bad number, fails the pipeline: use {@link RawSchemas#text} to have
   * the service reject such values instead.
   */
  public static PTransform<PCollection<String>, PCollection<Row>> fromCsv(
      Schema schema, String header) {
    Arguments.requireText(header, "header");
    return new ParseLines(schema, new CsvFn(schema, header));
  }

  /**
   * Parses JSON-lines text, one object per line; blank lines are skipped. Keys not in the schema
   * are ignored.
   */
  public static PTransform<PCollection<String>, PCollection<Row>> fromJsonLines(Schema schema) {
    return new ParseLines(schema, new JsonFn(schema));
  }

  /** One CSV line to its fields (RFC 4180 quoting within the line). */
  public static List<String> splitCsvLine(String line) {
    List<String> fields = new ArrayList<>();
    StringBuilder field = new StringBuilder();
    boolean quoted = false;
    for (int i = 0; i < line.length(); i++) {
      char c = line.charAt(i);
      if (quoted && c == '"' && i + 1 < line.length() && line.charAt(i + 1) == '"') {
        field.append('"');
        i++;
      } else if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        fields.add(field.toString());
        field.setLength(0);
      } else {
        field.append(c);
      }
    }
    fields.add(field.toString());
    return fields;
  }

  /**
   * A Row of {@code schema} from text values by field name; null or blank text is null.
   *
   * @throws NumberFormatException a DOUBLE or INT64 field's text is not a number
   */
  public static Row fromText(Schema schema, java.util.Map<String, String> values) {
    Row.Builder row = Row.withSchema(schema);
    for (Schema.Field field : schema.getFields()) {
      String text = values.get(field.getName());
      row.addValue(text == null || text.isBlank() ? null : parse(field, text.trim()));
    }
    return row.build();
  }

  /**
   * A Row of {@code schema} from one JSON object; missing keys and nulls are null.
   *
   * @throws IllegalArgumentException not a JSON object, or a value of the wrong JSON type
   */
  public static Row fromJson(Schema schema, String json) {
    JsonNode object;
    try {
      object = JSON.readTree(json);
    } catch (IOException e) {
      throw new IllegalArgumentException("not JSON: " + json, e);
    }
    if (object == null || !object.isObject()) {
      throw new IllegalArgumentException("expected a JSON object per line; got " + json);
    }
    Row.Builder row = Row.withSchema(schema);
    for (Schema.Field field : schema.getFields()) {
      JsonNode node = object.get(field.getName());
      row.addValue(node == null || node.isNull() ? null : jsonValue(field, node));
    }
    return row.build();
  }

  private static Object parse(Schema.Field field, String text) {
    switch (field.getType().getTypeName()) {
      case DOUBLE:
        return Double.valueOf(text);
      case INT64:
        return Long.valueOf(text);
      default:
        return text;
    }
  }

  private static Object jsonValue(Schema.Field field, JsonNode node) {
    Schema.TypeName type = field.getType().getTypeName();
    if (type == Schema.TypeName.DOUBLE && node.isNumber()) {
      return node.doubleValue();
    }
    if (type == Schema.TypeName.INT64 && node.canConvertToExactIntegral()) {
      return node.longValue();
    }
    if (type == Schema.TypeName.STRING) {
      return node.isTextual() ? node.textValue() : node.toString();
    }
    throw new IllegalArgumentException(
        "field " + field.getName() + " is " + type + "; got JSON " + node);
  }

  /** Applies a line parser and gives its output the Row schema. */
  private static final class ParseLines extends PTransform<PCollection<String>, PCollection<Row>> {
    private final Schema schema;
    private final DoFn<String, Row> parser;

    ParseLines(Schema schema, DoFn<String, Row> parser) {
      this.schema = schema;
      this.parser = parser;
    }

    @Override
    public PCollection<Row> expand(PCollection<String> lines) {
      return lines.apply("Parse", ParDo.of(parser)).setRowSchema(schema);
    }
  }

  private static final class CsvFn extends DoFn<String, Row> {
    private final Schema schema;
    private final String header;

    CsvFn(Schema schema, String header) {
      this.schema = schema;
      this.header = header;
    }

    @ProcessElement
    public void process(@Element String line, OutputReceiver<Row> out) {
      if (line.isBlank() || line.strip().equals(header.strip())) {
        return;
      }
      List<String> names = splitCsvLine(header.strip());
      List<String> fields = splitCsvLine(line);
      if (fields.size() != names.size()) {
        throw new IllegalArgumentException(
            "expected " + names.size() + " comma-separated fields (" + header + "), got "
                + fields.size() + ": " + line);
      }
      java.util.Map<String, String> values = new java.util.HashMap<>();
      for (int i = 0; i < names.size(); i++) {
        values.put(names.get(i), fields.get(i));
      }
      out.output(fromText(schema, values));
    }
  }

  private static final class JsonFn extends DoFn<String, Row> {
    private final Schema schema;

    JsonFn(Schema schema) {
      this.schema = schema;
    }

    @ProcessElement
    public void process(@Element String line, OutputReceiver<Row> out) {
      if (!line.isBlank()) {
        out.output(fromJson(schema, line));
      }
    }
  }
}
