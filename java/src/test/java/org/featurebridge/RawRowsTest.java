package org.featurebridge;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.values.Row;
import org.junit.Test;

/** Spec text to raw Row schemas, and text/JSON to raw Rows. */
public class RawRowsTest {
  private static final String YAML =
      "key: id\n"
          + "label: {column: y, kind: binary}\n"
          + "columns:\n"
          + "  - {name: id, type: string}\n"
          + "  - {name: x, type: float, missing: mean, transforms: [zscore]}\n"
          + "  - {name: y, type: int}\n";
  private static final String JSON =
      "{\"columns\": [{\"name\": \"a\", \"type\": \"int\", \"transforms\": [\"zscore\"]}]}";

  @Test
  public void typedSchemaFollowsTheSpecColumnsAllNullable() {
    Schema schema = RawSchemas.typed(YAML);
    assertEquals(List.of("id", "x", "y"), schema.getFieldNames());
    assertEquals(Schema.TypeName.STRING, schema.getField("id").getType().getTypeName());
    assertEquals(Schema.TypeName.DOUBLE, schema.getField("x").getType().getTypeName());
    assertEquals(Schema.TypeName.INT64, schema.getField("y").getType().getTypeName());
    for (Schema.Field f : schema.getFields()) {
      assertEquals(f.getName(), true, f.getType().getNullable());
    }
    assertEquals(Schema.TypeName.INT64, RawSchemas.typed(JSON).getField("a").getType().getTypeName());
  }

  @Test
  public void textSchemaIsAllStrings() {
    for (Schema.Field f : RawSchemas.text(YAML).getFields()) {
      assertEquals(Schema.TypeName.STRING, f.getType().getTypeName());
    }
  }

  @Test
  public void badSpecsAreRefusedWithTheReason() {
    assertThrows(IllegalArgumentException.class, () -> RawSchemas.typed("spec.yaml"));
    assertThrows(IllegalArgumentException.class, () -> RawSchemas.typed("columns: [x]"));
    assertThrows(IllegalArgumentException.class, () -> RawSchemas.typed("columns: {a: 1"));
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () -> RawSchemas.typed("columns: [{name: a, type: double}]"));
    assertEquals(
        "spec: column a has type 'double'; allowed: float, int, string", e.getMessage());
  }

  @Test
  public void csvLinesSplitWithQuotes() {
    assertEquals(List.of("a", "", "b,c", "say \"hi\"", ""),
        RawRows.splitCsvLine("a,,\"b,c\",\"say \"\"hi\"\"\","));
  }

  @Test
  public void blankTextIsMissing() {
    Schema schema = RawSchemas.typed(YAML);
    Map<String, String> values = new HashMap<>();
    values.put("id", "r1");
    values.put("x", " ");
    values.put("y", "1");
    Row row = RawRows.fromText(schema, values);
    assertEquals("r1", row.getString("id"));
    assertNull(row.getDouble("x"));
    assertEquals(Long.valueOf(1), row.getInt64("y"));
    assertThrows(NumberFormatException.class, () -> RawRows.fromText(schema, Map.of("x", "abc")));
  }

  @Test
  public void jsonNullsAndAbsentKeysAreMissing() {
    Schema schema = RawSchemas.typed(YAML);
    Row row = RawRows.fromJson(schema, "{\"id\": \"r\", \"x\": 3, \"extra\": true}");
    assertEquals("r", row.getString("id"));
    assertEquals(Double.valueOf(3.0), row.getDouble("x"));
    assertNull(row.getInt64("y"));
    assertNull(RawRows.fromJson(schema, "{\"x\": null}").getDouble("x"));
    assertThrows(IllegalArgumentException.class, () -> RawRows.fromJson(schema, "{\"y\": 1.5}"));
    assertThrows(IllegalArgumentException.class, () -> RawRows.fromJson(schema, "[1]"));
  }
}
