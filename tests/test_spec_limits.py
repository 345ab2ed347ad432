"""Spec limits: every bound refuses quickly, names itself, the value and how
to raise it; overrides raise bounds; our own canonical spec is re-read
without them; no error echoes what it was sent."""

import os
import re
import sys
import time

import pytest

from featurebridge.transforms.errors import SpecError, UsageError, excerpt
from featurebridge.transforms.spec import FeatureSpec, load_spec
from featurebridge.transforms.spec_limits import (
    UNLIMITED,
    SpecLimits,
    active_limits,
    parse_limit_overrides,
    set_active_limits,
)

ONE = "columns: [{name: a, type: float, transforms: [zscore]}]\n"
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


@pytest.fixture(autouse=True)
def _default_limits():
    previous = set_active_limits(SpecLimits())
    yield
    set_active_limits(previous)


def refused(text, *, limits=None, seconds=5.0, **kw) -> str:
    """The SpecError message of parsing `text`, checked to be fast and short."""
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        if isinstance(text, str):
            FeatureSpec.from_text(text, limits=limits, **kw)
        else:
            FeatureSpec.from_dict(text, limits=limits, **kw)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < seconds, (elapsed, message[:200])
    assert len(message) < 1024, message[:300]
    return message


def assert_limit(message, name, value, bound):
    assert f"is {value}" in message or f"has {value} entries" in message or f"{value}" in message, message
    assert f"the most allowed is {bound}" in message, message
    assert f"(spec limit {name}; raise it with --spec_limit {name}=N)" in message, message


def transform(text_type, options):
    return f"columns: [{{name: a, type: {text_type}, transforms: [{{{options}}}]}}]\n"


# ---- each bound ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, name, value, bound, where",
    [
        (transform("float", "type: bucketize, num_buckets: 1000000000"), "num_buckets", 1000000000, 10000,
         "<spec>: column 'a', transforms[0] (bucketize): field 'num_buckets' is 1000000000"),
        (transform("string", "type: ngrams, ngram_range: [1, 1000000]"), "ngram", "[1, 1000000]", 8,
         "(ngrams): field 'ngram_range' is [1, 1000000]"),
        (transform("string", "type: bag_of_words, ngram_range: [2, 9]"), "ngram", "[2, 9]", 8, "(bag_of_words)"),
        (transform("string", "type: tfidf, vocab_size: 1000001"), "vocab_size", 1000001, 1000000, "(tfidf)"),
        (transform("string", "type: tfidf, vocab_size: 5, ngram_range: [1, 20]"), "ngram", "[1, 20]", 8, "(tfidf)"),
        (transform("string", "type: vocabulary, top_k: 1000001"), "top_k", 1000001, 1000000, "(vocabulary)"),
        (transform("string", "type: vocabulary, num_oov_buckets: 100001"), "num_oov_buckets", 100001, 100000, "(vocabulary)"),
        (transform("string", "type: hash, hash_buckets: 1000001"), "hash_buckets", 1000001, 1000000, "(hash)"),
        (transform("string", "type: ngrams, separator: '" + "-" * 17 + "'"), "separator_chars", "'" + "-" * 17, 16, "(ngrams)"),
        ("columns: [{name: a, type: int}, {name: b, type: int}]\ncrosses: [{columns: [a, b], hash_buckets: 1000001}]",
         "hash_buckets", 1000001, 1000000, "<spec>: crosses[0]: field 'hash_buckets'"),
        ("columns: [{name: " + "a" * 129 + ", type: float, transforms: [zscore]}]", "name_chars", "(129 chars)", 128,
         "<spec>: columns[0]: field 'name'"),
        ("columns: [{name: a, source: '" + "s" * 1025 + "', type: float, transforms: [zscore]}]", "source_chars",
         "(1025 chars)", 1024, "field 'source'"),
        ("columns: [{name: a, type: float, transforms: [{type: zscore, name: " + "z" * 129 + "}]}]", "name_chars",
         "(129 chars)", 128, "transforms[0] (zscore): field 'name'"),
        ("columns: [{name: a, type: string, missing: {constant: '" + "c" * 4097 + "'}, transforms: [hash]}]".replace(
            "hash]", "{type: hash, hash_buckets: 3}]"), "string_chars", "(4097 chars)", 4096, "field 'constant'"),
        ("label: {column: y, kind: binary, positive: '" + "p" * 4097 + "'}\ncolumns: [{name: y, type: string}, "
         "{name: a, type: float, transforms: [zscore]}]", "string_chars", "(4097 chars)", 4096, "<spec>: label: field 'positive'"),
        ("input: {null_markers: ['" + "n" * 257 + "']}\n" + ONE, "null_marker_chars", "(257 chars)", 256,
         "<spec>: input: field 'null_markers'"),
        ("input: {null_markers: [" + ", ".join(f"m{i}" for i in range(1001)) + "]}\n" + ONE, "null_markers", 1001, 1000,
         "field 'null_markers' has 1001 entries"),
        ("columns: [{name: a, type: float, null_markers: [" + ", ".join(f"m{i}" for i in range(1001)) + "], transforms: [zscore]}]",
         "null_markers", 1001, 1000, "<spec>: column 'a': field 'null_markers' has 1001 entries"),
        ("columns:\n" + "".join(f"  - {{name: c{i}, type: float, transforms: [zscore]}}\n" for i in range(2001)),
         "columns", 2001, 2000, "<spec>: field 'columns' has 2001 entries"),
        ("columns: [{name: a, type: float, transforms: [" + ", ".join(f"{{type: zscore, name: z{i}}}" for i in range(65)) + "]}]",
         "transforms_per_column", 65, 64, "<spec>: column 'a': field 'transforms' has 65 entries"),
        ("columns: [" + ", ".join(f"{{name: c{i}, type: int}}" for i in range(10)) + "]\ncrosses: [{columns: ["
         + ", ".join(f"c{i}" for i in range(9)) + "], hash_buckets: 3}]", "cross_columns", 9, 8,
         "<spec>: crosses[0]: field 'columns' has 9 entries"),
        ("columns: [{name: a, type: int}, {name: b, type: int}]\ncrosses: ["
         + ", ".join(f"{{columns: [a, b], hash_buckets: 3, name: x{i}}}" for i in range(201)) + "]",
         "crosses", 201, 200, "<spec>: field 'crosses' has 201 entries"),
        ("input: {header: false, column_names: [" + ", ".join(f"c{i}" for i in range(2001)) + "]}\n" + ONE,
         "columns", 2001, 2000, "<spec>: input: field 'column_names' has 2001 entries"),
    ],
)
def test_each_bound_names_itself_the_value_and_how_to_raise_it(text, name, value, bound, where):
    message = refused(text)
    assert where in message, message
    assert_limit(message, name, value, bound)


def test_the_total_of_transforms_is_bounded():
    columns = "".join(
        f"  - {{name: c{i}, type: float, transforms: [{', '.join(f'{{type: zscore, name: z{i}_{j}}}' for j in range(41))}]}}\n"
        for i in range(100)
    )
    message = refused("columns:\n" + columns)
    assert "the spec has 4018 transforms in all so far" in message and "column 'c97'" in message
    assert_limit(message, "transforms", 4018, 4000)


def test_the_bounds_still_accept_their_own_value():
    spec = FeatureSpec.from_text(
        "columns: [{name: a, type: float, transforms: [{type: bucketize, num_buckets: 10000}]},"
        " {name: t, type: string, transforms: [{type: ngrams, ngram_range: [1, 8], top_k: 1000000}, "
        "{type: hash, hash_buckets: 1000000}]}]"
    )
    assert spec.column("a").transforms[0].options["num_buckets"] == 10000


# ---- amplification attacks: instant refusals, short messages ---------------


def test_an_alias_bomb_is_refused_at_once():
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f'{c}: &{c} [{",".join(["*" + p] * 9)}]\n' for p, c in zip("abcdefgh", "bcdefghi")
    )
    assert len(bomb) < 600
    message = refused(bomb, seconds=2.0)
    assert "anchors and aliases are not allowed in a spec; write the values out" in message
    assert "line 1, column" in message
    assert "anchors and aliases" in refused("columns: [{name: a, type: float, transforms: &t [zscore]}]")


def test_deep_nesting_is_refused_by_depth():
    for text in ("[" * 100_000 + "]" * 100_000, "{a: " * 5000 + "1" + "}" * 5000, "version: " + "[" * 13 + "]" * 13 + "\n" + ONE):
        message = refused(text)
        assert "the spec nests 13 levels deep; the most allowed is 12" in message
        assert "(spec limit depth; raise it with --spec_limit depth=N)" in message
    assert FeatureSpec.from_text("version: " + "[" * 11 + "]" * 11 + "\n" + ONE)


def test_too_many_nodes_are_refused():
    message = refused("version: [" + ",".join(["1"] * 200_000) + "]\n" + ONE)
    assert "the most allowed is 100000 (spec limit nodes; raise it with --spec_limit nodes=N)" in message


def test_a_50_mb_column_name_is_neither_parsed_nor_echoed():
    name = "a" * 50_000_000
    message = refused(f"columns: [{{name: {name}, type: float, transforms: [zscore]}}]")
    assert "spec limit spec_bytes" in message
    # Given as data (no text to measure) or with a raised size limit: name_chars refuses it, in short.
    for data, limits in (
        ({"columns": [{"name": name, "type": "float", "transforms": ["zscore"]}]}, None),
        (f"columns: [{{name: {name}, type: float, transforms: [zscore]}}]", SpecLimits(spec_bytes=60_000_000)),
    ):
        message = refused(data, limits=limits, seconds=10.0)
        assert "field 'name' is 'aaaa" in message and "… (50000000 chars)" in message
        assert_limit(message, "name_chars", "", 128)


def test_an_invalid_name_within_name_chars_is_shown_with_its_hint():
    message = refused("columns: [{name: '" + "a b" * 42 + "', type: float, transforms: [zscore]}]")
    assert "'name' must be an identifier" in message and "write `name: a_ba_b" in message


def test_a_2_mb_spec_text_is_refused_by_its_size(tmp_path):
    text = ONE + "#" * 2_000_000
    message = refused(text)
    assert f"the spec is {len(text)} bytes; the most allowed is 1048576 bytes" in message
    assert "(spec limit spec_bytes; raise it with --spec_limit spec_bytes=N)" in message
    path = tmp_path / "big.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(SpecError, match=rf"big.yaml: the spec is {len(text)} bytes"):
        load_spec(str(path))
    assert time.monotonic() - started < 5  # a bomb would take minutes; generous for a loaded CI box
    assert load_spec(str(path), limits=SpecLimits(spec_bytes=3_000_000)).column_names == ("a",)


def _big_spec(n_columns: int) -> str:
    return "columns:\n" + "".join(
        f'  - {{name: c{i}, source: "{"s" * 290}{i}", type: string, missing: {{constant: "{"k" * 60}"}}, '
        f"transforms: [{{type: vocabulary, top_k: 1000}}, {{type: hash, hash_buckets: 100, name: h{i}}}]}}\n"
        for i in range(n_columns)
    )


def _python_calls(fn) -> int:
    """How many Python function calls `fn()` makes (a measure of work that,
    unlike time, does not depend on what else the machine is doing)."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_a_1_mb_spec_of_valid_content_parses_with_work_linear_in_its_size():
    text = _big_spec(2000)
    assert 1_000_000 < len(text) <= SpecLimits().spec_bytes
    assert len(FeatureSpec.from_text(text).columns) == 2000
    # Twice the columns, about twice the work: nothing in parsing and
    # checking a spec grows faster than its size.
    half, full = (_python_calls(lambda n=n: FeatureSpec.from_text(_big_spec(n))) for n in (500, 1000))
    assert full < 2.3 * half, (half, full)


@pytest.mark.parametrize(
    "text, where",
    [
        (transform("float", "type: bucketize, num_buckets: 1000000000000000000000000000000"), "columns[0].transforms[0].num_buckets"),
        (transform("string", "type: vocabulary, frequency_threshold: 9223372036854775808"), "frequency_threshold"),
        (transform("string", "type: vocabulary, frequency_threshold: -9223372036854775809"), "frequency_threshold"),
        ("version: 100000000000000000000000000000\n" + ONE, "<spec>: version: the integer"),
        ("columns: [{name: a, type: int, missing: {constant: 99999999999999999999999}, transforms: [zscore]}]", "missing.constant"),
    ],
)
def test_every_integer_must_fit_int64(text, where):
    message = refused(text)
    assert where in message and "does not fit in 64 bits" in message, message
    assert FeatureSpec.from_text(transform("string", "type: vocabulary, frequency_threshold: 9223372036854775807"))


def test_a_number_too_long_to_read_is_refused_before_it_is_built():
    message = refused("version: " + "9" * 5000 + "\n" + ONE)
    assert "a number of 5000 characters" in message
    message = refused("version: 1" + ":1" * 300_000 + "\n" + ONE)  # YAML 1.1 base 60
    assert "a number of 600001 characters" in message


@pytest.mark.parametrize(
    "options, field",
    [
        ("type: clip, min: .nan", "min"),
        ("type: clip, max: .inf", "max"),
        ("type: min_max, output_min: -.inf", "output_min"),
        ("type: min_max, output_max: .NaN", "output_max"),
    ],
)
def test_nan_and_inf_are_refused(options, field):
    message = refused(transform("float", options))
    assert re.search(rf"field '{field}' is -?(nan|inf); it must be a finite number", message), message


def test_a_nan_or_infinite_constant_is_refused():
    message = refused("columns: [{name: a, type: float, missing: {constant: .inf}, transforms: [zscore]}]")
    assert "column 'a', field 'missing': field 'constant' is inf; it must be a finite number" in message
    message = refused({"columns": [{"name": "a", "type": "float", "missing": {"constant": float("nan")}, "transforms": ["zscore"]}]})
    assert "field 'constant' is nan" in message


@pytest.mark.parametrize(
    "text, message",
    [
        ("columns: !!python/object/apply:os.system ['true']", "is not allowed in a spec"),
        ("columns: !!binary aGVsbG8=", "the tag 'tag:yaml.org,2002:binary' is not allowed"),
        ("columns: !custom [1]", "the tag '!custom' is not allowed"),
        ("version: 2024-13-45\n" + ONE, "not valid YAML or JSON (a value cannot be read"),
        ("columns: [\n" + "x" * 100_000 + ": : :\n  - ]", "not valid YAML or JSON (line"),
        ("columns: [{name: a\x00b}]", "not valid YAML or JSON (position"),
    ],
)
def test_yaml_tags_and_bad_values_are_spec_errors(text, message):
    assert message in refused(text)


def test_a_yaml_error_keeps_the_position_not_the_text():
    secret = "s3cr3t" * 1000
    message = refused(f"columns: [{{name: {secret}, type: float, transforms: [zscore]]\n")
    assert "line 1, column" in message and "s3cr3t" not in message


def test_a_self_containing_structure_is_refused_as_too_deep():
    data = {"columns": []}
    data["columns"].append(data)
    assert "levels deep" in refused(data)


def test_lists_in_messages_are_capped():
    keys = ", ".join(f"k{i}{'x' * 100}: 1" for i in range(1000))
    message = refused(f"columns: [{{name: a, type: float, transforms: [zscore], {keys}}}]")
    assert "unknown field(s) [" in message and ", and 990 more]" in message
    declared = "".join(f"  - {{name: c{i}, type: float, transforms: [zscore]}}\n" for i in range(500))
    message = refused("key: nope\ncolumns:\n" + declared)
    assert "'nope' is not a declared column" in message and "and 490 more" in message


def test_odd_values_are_spec_errors_not_crashes():
    for text in (
        "label: {column: [a], kind: binary}\n" + ONE,
        "crosses: 5\n" + ONE,
        "columns: [{name: a, type: float, 1: 2, transforms: [zscore]}]",
        "columns: [{name: a, type: float, transforms: [{type: [zscore]}]}]",
        "columns: [{name: a, type: int}, {name: b, type: int}]\ncrosses: [{columns: [a, [b]], hash_buckets: 3}]",
        "columns: [{name: a, type: int}, {name: b, type: int}]\ncrosses: [{columns: [a, b], hash_buckets: 3, name: [x]}]",
        "columns: [{name: a, type: float, missing: {constant: 1, 2: 3}, transforms: [zscore]}]",
    ):
        refused(text)


# ---- overrides, the active limits and trusted re-parsing --------------------


def test_overrides_raise_a_bound():
    text = transform("float", "type: bucketize, num_buckets: 20000")
    refused(text)
    raised = SpecLimits().with_overrides(["num_buckets=20000"])
    assert raised.num_buckets == 20000 and raised.top_k == SpecLimits().top_k
    assert FeatureSpec.from_text(text, limits=raised).column("a").transforms[0].options["num_buckets"] == 20000
    set_active_limits(parse_limit_overrides(["num_buckets=20000", "ngram=10"]))
    assert active_limits().ngram == 10
    assert FeatureSpec.from_text(text)
    assert parse_limit_overrides(["num_buckets = 1_000"]).num_buckets == 1000
    assert parse_limit_overrides([]) == SpecLimits()


@pytest.mark.parametrize(
    "override, message",
    [
        ("num_bucket=5", r"unknown spec limit 'num_bucket'; the spec limits are spec_bytes, depth, nodes, .*num_buckets"),
        ("num_buckets", r"--spec_limit takes NAME=N"),
        ("num_buckets=ten", r"spec limit num_buckets needs a positive integer; got 'ten'"),
        ("num_buckets=0", r"needs a positive integer; got '0'"),
        ("num_buckets=" + "9" * 30, r"needs a positive integer"),
    ],
)
def test_bad_overrides_are_usage_errors(override, message):
    with pytest.raises(UsageError, match=message):
        parse_limit_overrides([override])


def test_trusted_reparse_of_our_canonical_spec_ignores_limits():
    raised = SpecLimits(num_buckets=50_000)
    spec = FeatureSpec.from_text(transform("float", "type: bucketize, num_buckets: 50000"), limits=raised)
    with pytest.raises(SpecError, match="spec limit num_buckets"):
        FeatureSpec.from_text(spec.to_json())  # a worker with the default limits
    again = FeatureSpec.from_text(spec.to_json(), trusted=True)
    assert again.digest() == spec.digest()
    assert FeatureSpec.from_dict(spec.to_dict(), trusted=True).digest() == spec.digest()
    assert FeatureSpec.from_text(spec.to_json(), limits=UNLIMITED).digest() == spec.digest()


def test_load_analyzed_reads_its_manifest_trusted(tmp_path):
    import json

    from featurebridge.transforms import layout

    spec = FeatureSpec.from_text(transform("float", "type: bucketize, num_buckets: 50000"), limits=SpecLimits(num_buckets=50_000))
    (tmp_path / layout.TRANSFORM_FN_DIR).mkdir()
    (tmp_path / layout.MANIFEST).write_text(json.dumps({"spec": spec.to_dict()}))
    assert layout.load_analyzed(str(tmp_path)).spec.digest() == spec.digest()


# ---- normal specs still parse ------------------------------------------------


def test_normal_specs_still_parse():
    from featurebridge.pipelines.sample_data import SAMPLE_SPEC
    from tests.expansion_helpers import SPEC
    from tests.test_spec import GOOD

    for text in (SPEC, GOOD, SAMPLE_SPEC):
        spec = FeatureSpec.from_text(text)
        assert FeatureSpec.from_text(spec.to_json()).digest() == spec.digest()


def test_the_readme_spec_still_parses():
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    block = readme.split("## The feature spec", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    # The README's example is illustrative: name every file column and cross declared columns.
    block = block.replace("column_names: [trip_id, fare, ...]", 'column_names: [trip_id, "Fare ($)", start, shared, company, comment, tipped]')
    block = block.replace("[company, payment_type]", "[company, shared]")
    spec = FeatureSpec.from_text(block)
    assert spec.key == "trip_id" and spec.input.delimiter == ";"


def test_excerpt_is_short_and_escaped():
    assert excerpt("abc") == "'abc'" and excerpt(1.5) == "1.5" and excerpt(["a"]) == "['a']"
    assert excerpt("a\nb\x00") == "'a\\nb\\x00'"
    assert excerpt("x" * 1000) == "'" + "x" * 60 + "'… (1000 chars)"
    assert excerpt(10**5000) == "an integer of about 5000 digits"
    assert len(excerpt([["y" * 10_000] * 10_000] * 10)) < 100


# ---- the command line ----------------------------------------------------------


def test_the_cli_spec_limit_flag(tmp_path, capsys):
    from featurebridge.pipelines.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(transform("float", "type: bucketize, num_buckets: 15000"))
    argv = ["analyze", "--input", str(tmp_path / "none.csv"), "--spec", str(spec), "--output", str(tmp_path / "out")]
    started = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "field 'num_buckets' is 15000; the most allowed is 10000" in err
    assert "raise it with --spec_limit num_buckets=N" in err
    # Raised: the spec passes and the missing input is what stops it (before any pipeline).
    assert main(argv + ["--spec_limit", "num_buckets=20000"]) == 2
    err = capsys.readouterr().err
    assert "No input files match" in err and "num_buckets" not in err
    assert main(argv + ["--spec_limit=num_bucket=20000"]) == 2
    assert "unknown spec limit 'num_bucket'" in capsys.readouterr().err
    run_argv = ["run", *argv[1:]]
    assert main(run_argv) == 2
    assert "spec limit num_buckets" in capsys.readouterr().err
    assert main(run_argv + ["--spec_limit", "num_buckets=20000", "--spec_limit", "ngram=9"]) == 2
    assert "No input files match" in capsys.readouterr().err
    assert active_limits().ngram == 9
    assert time.monotonic() - started < 30
