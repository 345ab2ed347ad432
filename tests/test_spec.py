"""Feature spec parsing and validation: every error names the column and field."""

import json

import pytest

from featurebridge.transforms.spec import FeatureSpec, SpecError, load_spec

GOOD = """
key: id
label: {column: y, kind: binary, positive: "yes"}
columns:
  - {name: id, type: string}
  - {name: age, type: float, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 4}]}
  - {name: city, type: string, missing: {constant: "?"}, transforms: [{type: vocabulary, top_k: 10}]}
  - {name: text, type: string, missing: {constant: ""}, transforms: [{type: tfidf, vocab_size: 50, ngram_range: [1, 2]}]}
  - {name: n, type: int, missing: median, transforms: [{type: clip, min: 0, max: 5, name: n_clipped}]}
  - {name: y, type: string}
crosses:
  - {columns: [city, n], hash_buckets: 100}
"""


def test_parses_good_spec_and_names_outputs():
    spec = FeatureSpec.from_text(GOOD)
    assert spec.key == "id"
    assert spec.label.kind == "binary" and spec.label.positive == "yes"
    assert spec.output_names == (
        "age_zscore",
        "age_bucketize",
        "city_vocabulary",
        "text_tfidf_index",
        "text_tfidf_weight",
        "n_clipped",
        "city_x_n",
        "y",
    )
    assert spec.column("city").transforms[0].options["num_oov_buckets"] == 1


def test_round_trip_and_digest_are_stable():
    spec = FeatureSpec.from_text(GOOD)
    again = FeatureSpec.from_text(spec.to_json())
    assert again.to_json() == spec.to_json()
    assert again.digest() == spec.digest()
    assert json.loads(spec.to_json())["columns"][1]["missing"] == "mean"


def test_load_spec_reads_files_and_inline_text(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD)
    assert load_spec(str(path)).source == str(path)
    assert load_spec(GOOD).source == "<inline spec>"
    with pytest.raises(SpecError, match=r"Spec file '.*nope.yaml' does not exist. Pass --spec"):
        load_spec(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("columns: []", r"'columns' must be a non-empty list"),
        ("[1, 2]", r"a spec must be a mapping"),
        ("columns: [{name: a, type: double}]", r"column 'a': field 'type' is 'double'; allowed: \['float', 'int', 'string', 'bool', 'timestamp'\]"),
        ("columns: [{name: a, type: float, missing: maybe, transforms: [zscore]}]", r"column 'a', field 'missing': got 'maybe'"),
        ("columns: [{name: a, type: string, missing: mean, transforms: [hash]}]", r"column 'a', field 'missing': 'mean' needs a float or int column"),
        ("columns: [{name: a, type: float, transforms: [frobnicate]}]", r"column 'a', transforms\[0\]: transform type 'frobnicate' is unknown"),
        ("columns: [{name: a, type: string, transforms: [zscore]}]", r"column 'a', transforms\[0\] \(zscore\): applies to \['float', 'int'\] columns; this column is string"),
        ("columns: [{name: a, type: float, transforms: [bucketize]}]", r"\(bucketize\): field 'num_buckets' is required"),
        ("columns: [{name: a, type: float, transforms: [{type: bucketize, num_buckets: 1}]}]", r"field 'num_buckets' must be >= 2; got 1"),
        ("columns: [{name: a, type: string, transforms: [{type: vocabulary, top_k: ten}]}]", r"field 'top_k' must be an integer; got 'ten'"),
        ("columns: [{name: a, type: float, transforms: [{type: zscore, scale: 2}]}]", r"unknown field\(s\) \['scale'\]"),
        ("columns: [{name: a, type: float, transforms: [zscore]}, {name: a, type: float}]", r"column 'a': is declared twice"),
        ("columns: [{name: a b, type: float}]", r"'name' must be an identifier"),
        ("columns: [{name: a, type: float, transforms: [zscore, zscore]}]", r"\['a_zscore'\] are produced twice"),
        ("columns: [{name: a, type: float}]", r"no column has transforms"),
        ("label: {column: z, kind: binary}\ncolumns: [{name: a, type: float, transforms: [zscore]}]", r"label: column 'z' is not declared"),
        ("label: {column: a, kind: ranking}\ncolumns: [{name: a, type: int}, {name: b, type: float, transforms: [zscore]}]", r"label: field 'kind' is 'ranking'"),
        ("label: {column: a, kind: binary}\ncolumns: [{name: a, type: string}, {name: b, type: float, transforms: [zscore]}]", r"needs 'positive'"),
        ("label: {column: a, kind: multiclass}\ncolumns: [{name: a, type: float}, {name: b, type: float, transforms: [zscore]}]", r"a multiclass label must be an int \(class ids 0\.\.K-1\) or string column"),
        ("label: {column: a, kind: binary}\ncolumns: [{name: a, type: int, missing: mean}, {name: b, type: float, transforms: [zscore]}]", r"the label and key columns cannot be filled"),
        ("key: k\ncolumns: [{name: a, type: float, transforms: [zscore]}]", r"key: 'k' is not a declared column"),
        ("columns: [{name: a, type: float, transforms: [{type: clip}]}]", r"\(clip\): give 'min', 'max' or both"),
        ("columns: [{name: a, type: string, transforms: [{type: ngrams, ngram_range: [2, 1]}]}]", r"'ngram_range' must be \[min, max\]"),
        ("columns: [{name: a, type: float, transforms: [zscore]}]\ncrosses: [{columns: [a, a], hash_buckets: 3}]", r"column 'a' is float; cross only string or int columns"),
        ("columns: [{name: a, type: int, missing: {constant: 1.5}, transforms: [zscore]}]", r"constant 1.5 is not a valid int value"),
        ("columns: {a: 1", r"not valid YAML or JSON"),
    ],
)
def test_bad_specs_name_the_column_and_field(text, message):
    with pytest.raises(SpecError, match=message):
        FeatureSpec.from_text(text)


def test_input_options_source_names_bools_and_timestamps():
    spec = FeatureSpec.from_text(
        """
input: {delimiter: ";", header: false, column_names: [ok, "petal width (cm)", when], null_markers: ["-"]}
label: {column: ok, kind: binary}
columns:
  - {name: ok, type: bool}
  - {name: petal_width, source: "petal width (cm)", type: float, missing: mean, transforms: [zscore]}
  - {name: when, type: timestamp, null_markers: [], missing: {constant: "2024-01-31 08:00"}, transforms: [year, day_of_week]}
"""
    )
    assert spec.source_names == ("ok", "petal width (cm)", "when")
    assert spec.column("petal_width").null_markers == ("-",) and spec.column("when").null_markers == ()
    assert spec.column("ok").storage == "int" and spec.column("when").storage == "string"
    assert spec.output_names == ("petal_width_zscore", "when_year", "when_day_of_week", "ok")
    assert FeatureSpec.from_text(spec.to_json()).digest() == spec.digest()


@pytest.mark.parametrize(
    "text, message",
    [
        ("columns: [{name: 'petal width (cm)', type: float, transforms: [zscore]}]",
         r"got 'petal width \(cm\)'. To read a file column named 'petal width \(cm\)', write `name: petal_width_cm` and `source: \"petal width \(cm\)\"`."),
        ("columns: [{name: t, type: timestamp, missing: {constant: '31/01/2024'}, transforms: [year]}]",
         r"constant '31/01/2024' is not a valid timestamp value. Use an ISO 8601 date or date-time"),
        ("columns: [{name: b, type: bool, missing: {constant: 1}, transforms: [identity]}]",
         r"constant 1 is not a valid bool value. Use true or false."),
        ("columns: [{name: b, type: bool, transforms: [zscore]}]", r"applies to \['float', 'int'\] columns; this column is bool"),
        ("label: {column: b, kind: multiclass}\ncolumns: [{name: b, type: bool}, {name: x, type: float, transforms: [zscore]}]",
         r"a bool label column makes a binary label; use kind: binary."),
        ("input: {header: false}\ncolumns: [{name: x, type: float, transforms: [zscore]}]",
         r"'header: false' needs 'column_names'"),
        ("input: {delimiter: ';;'}\ncolumns: [{name: x, type: float, transforms: [zscore]}]",
         r"field 'delimiter' must be one character; got ';;'"),
        ("input: {encoding: klingon}\ncolumns: [{name: x, type: float, transforms: [zscore]}]",
         r"field 'encoding' 'klingon' is not a known text encoding"),
        ("columns: [{name: a, source: x, type: float, transforms: [zscore]}, {name: x, type: float}]",
         r"column 'x': reads file column 'x', which column 'a' already reads"),
    ],
)
def test_new_fields_say_what_is_wrong(text, message):
    with pytest.raises(SpecError, match=message):
        FeatureSpec.from_text(text)


def test_constants_show_vocabulary_values_with_their_spaces(tmp_path):
    from featurebridge.transforms.constants_json import read_vocabulary

    path = tmp_path / "vocab"
    path.write_bytes(b"3 New__SPACE__York\n1 Oslo\n")
    assert read_vocabulary(str(path)) == [{"value": "New York", "count": 3}, {"value": "Oslo", "count": 1}]


def test_spec_still_exports_its_parts_and_tables():
    from featurebridge.transforms import input_format, spec, spec_parts, spec_tables

    for name in spec.__all__:
        assert getattr(spec, name) is not None, name
    assert spec.Column is spec_parts.Column and spec.InputFormat is input_format.InputFormat
    assert spec.BOOL_SPELLINGS is spec_tables.BOOL_SPELLINGS
