"""A bounded fuzz of the spec parser (hypothesis): whatever text or data it is
sent, the parser returns a spec or raises SpecError with a short message,
quickly and in bounded memory. Never another exception, never a hang.

Derandomized and without an example database, so CI runs the same examples
every time; sized to run in well under 30 seconds.
"""

import copy
import json
import time
import tracemalloc

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebridge.transforms.errors import SpecError
from featurebridge.transforms.spec import FeatureSpec
from featurebridge.transforms.spec_limits import SpecLimits

FUZZ = settings(
    max_examples=150,
    deadline=1000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

VALID = {
    "key": "id",
    "label": {"column": "y", "kind": "binary", "positive": "yes"},
    "input": {"delimiter": ";", "null_markers": ["NA", "-"]},
    "columns": [
        {"name": "id", "type": "string"},
        {"name": "age", "type": "float", "missing": "mean", "transforms": ["zscore", {"type": "bucketize", "num_buckets": 4}]},
        {"name": "city", "type": "string", "missing": {"constant": "?"}, "transforms": [{"type": "vocabulary", "top_k": 10}]},
        {"name": "text", "type": "string", "transforms": [{"type": "tfidf", "vocab_size": 50, "ngram_range": [1, 2]}]},
        {"name": "n", "type": "int", "missing": "median", "transforms": [{"type": "clip", "min": 0, "max": 5, "name": "n_clip"}]},
        {"name": "when", "type": "timestamp", "transforms": ["year"], "null_markers": []},
        {"name": "y", "type": "string"},
    ],
    "crosses": [{"columns": ["city", "n"], "hash_buckets": 100}],
}
VALID_TEXT = yaml.safe_dump(VALID, default_flow_style=None, sort_keys=False)
# Small limits, so that random data also reaches the bounds.
SMALL = SpecLimits(depth=6, nodes=300, columns=5, transforms_per_column=3, num_buckets=50, ngram=3, name_chars=16)

YAML_CHARS = "{}[],:&*!|>-?'\"#%@`\\\n\t ._=~0123456789abceflnorstuy"
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
nested = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=6),
    max_leaves=40,
)


def _paths(value, path=()):
    """Every path into `value` (dict keys and list indexes)."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, path + (i,))


PATHS = [p for p in _paths(VALID) if p]


def parse(build, arg, **kw):
    """Calls `build(arg)`: a spec or a short SpecError, fast and in bounded memory."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = build(arg, **kw)
        assert isinstance(result, FeatureSpec)
        FeatureSpec.from_text(result.to_json(), trusted=True)  # what it accepts round-trips
    except SpecError as e:
        assert len(str(e)) < 1024, str(e)[:300]
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 64 * 2**20, peak


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text):
    parse(FeatureSpec.from_text, text)


@FUZZ
@given(st.text(alphabet=YAML_CHARS, max_size=400))
def test_random_yaml_like_text(text):
    parse(FeatureSpec.from_text, text)
    parse(FeatureSpec.from_text, "columns: [" + text, limits=SMALL)


@FUZZ
@given(nested)
def test_random_nested_structures(data):
    parse(FeatureSpec.from_dict, data)
    parse(FeatureSpec.from_dict, {"columns": data})
    parse(FeatureSpec.from_dict, {"columns": [{"name": "a", "type": "string", "transforms": data}]}, limits=SMALL)
    try:
        text = json.dumps(data, allow_nan=True)
    except (TypeError, ValueError):
        return
    parse(FeatureSpec.from_text, text)


@FUZZ
@given(st.sampled_from(PATHS), nested, st.booleans())
def test_mutations_of_a_valid_spec(path, value, delete):
    data = copy.deepcopy(VALID)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    parse(FeatureSpec.from_dict, data)
    parse(FeatureSpec.from_dict, data, limits=SMALL)
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    parse(FeatureSpec.from_text, text)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID_TEXT)), st.integers(0, 8), st.text(alphabet=YAML_CHARS, max_size=8)), max_size=6))
def test_text_edits_of_a_valid_spec(edits):
    text = VALID_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    parse(FeatureSpec.from_text, text)


def test_the_valid_spec_parses():
    assert FeatureSpec.from_text(VALID_TEXT).output_names[-1] == "y"
