"""The benchmark runner's pieces that need no pipeline: the text dataset
generator and its spec, the targets verdicts, the median of repeats and the
RESULTS.md block writer. No TensorFlow, no timing: fast."""

import numpy as np
import pyarrow.compute as pc
import pytest

from benchmarks import run
from benchmarks.data import TEXT_SPEC_YAML, generate_text_table, write_text_dataset


def _r(wall, work, rss=1000.0):
    return {"wall_s": wall, "work_s": work, "cpu_s": work, "peak_rss_mb": rss, "rows_per_s": 1.0}


def test_text_table_is_seeded_and_looks_like_text():
    table = generate_text_table(3000)
    assert table.equals(generate_text_table(3000))
    assert not table.equals(generate_text_table(3000, seed=15))
    assert table.column_names == ["text", "x0", "x1", "topic", "user"]
    text = table.column("text")
    assert 0.02 < text.null_count / len(text) < 0.08
    present = text.drop_null()
    words = pc.list_value_length(pc.ascii_split_whitespace(present)).to_numpy()
    assert words.min() >= 1 and 8 < words.mean() < 12
    assert pc.all(pc.ends_with(present, ".")).as_py()
    # Zipf-like: the most frequent word is far more common than the median one.
    counts = pc.value_counts(pc.list_flatten(pc.ascii_split_whitespace(present))).field("counts").to_numpy()
    assert counts.max() > 50 * np.median(counts)


def test_text_spec_parses_with_tfidf_and_fills(tmp_path):
    from featurebridge.transforms.spec import load_spec

    parquet, csv, spec_path = write_text_dataset(500, str(tmp_path))
    spec = load_spec(spec_path)
    text = spec.column("text")
    assert text.missing.policy == "constant"
    assert [t.type for t in text.transforms] == ["tfidf"]
    assert list(spec.column_names) == ["text", "x0", "x1", "topic", "user"]
    with open(spec_path, encoding="utf-8") as f:
        assert f.read() == TEXT_SPEC_YAML


def test_targets_met_not_met_and_not_measured():
    results = {
        "featurebridge": {200_000: _r(10, 8, 1000), 1_000_000: _r(20, 15, 1100), 5_000_000: _r(60, 50, 1200)},
        "tft_arrow": {1_000_000: _r(120, 100), 5_000_000: _r(300, 280)},
        "spark": {1_000_000: {"error": "exit code 1; see x.log"}},
        "pyarrow": {1_000_000: _r(5, 2)},
    }
    text = {"featurebridge": {1_000_000: _r(30, 25)}, "tft_arrow": {1_000_000: _r(200, 190)}}
    info = {"cold_start": {"rows": 1000, "featurebridge": {"wall_s": 5.0}, "tft": _r(20, 12), "ratio": 0.25}}
    rows = run.targets(info, results, text)
    # 1M vs TFT: 120 / 20 = 6x -> met; Spark failed -> not measured; pyarrow 5 / 20 = 0.25 < 1/3 -> not met;
    # 5M: 300 / 60 = 5x < 10 -> not met; text 200 / 30 = 6.7x -> met; RSS 1200 / 1000 = 1.2 -> met; cold 0.25 -> met.
    assert [r["status"] for r in rows] == ["met", "not measured", "not met", "not met", "met", "met", "met"], rows
    assert "6.00x" in rows[0]["measured"] and "6.67x" in rows[0]["measured"]  # command to result and work
    assert "exit code 1" in rows[1]["measured"]
    assert "| **met** |" in run.targets_table(rows)


def test_targets_not_measured_when_sizes_are_missing():
    results = {"featurebridge": {20_000: _r(9, 8, 950)}, "tft_arrow": {20_000: _r(14, 11)}}
    rows = run.targets({}, results, {})
    assert [r["status"] for r in rows] == ["not measured"] * 7
    assert "1,000,000 rows not in this run" in rows[0]["measured"]


def test_rss_over_the_limit_fails_without_5m():
    results = {"featurebridge": {200_000: _r(10, 8, 1000), 1_000_000: _r(20, 15, 1600)}}
    row = run.targets({}, results, {})[5]
    assert row["status"] == "not met" and "1,000,000" in row["measured"]


def test_median_takes_each_time_and_the_largest_rss():
    runs = [_r(10, 9, 900), _r(30, 5, 1000), _r(20, 7, 950)]
    m = run.median_result(runs)
    assert (m["wall_s"], m["work_s"], m["peak_rss_mb"]) == (20, 7, 1000)
    failed = {"error": "exit code 1"}
    assert run.median_result([failed]) is failed


def test_write_block_replaces_only_its_block(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# R\n\nhistory\n\n<!-- targets:begin -->\nold\n<!-- targets:end -->\n\ntail\n")
    run.write_block("targets", "new table", str(path))
    assert path.read_text() == "# R\n\nhistory\n\n<!-- targets:begin -->\nnew table\n<!-- targets:end -->\n\ntail\n"
    run.write_block("throughput", "figures", str(path))
    text = path.read_text()
    assert text.endswith("<!-- throughput:begin -->\nfigures\n<!-- throughput:end -->\n")
    assert "new table" in text and "tail" in text


@pytest.mark.parametrize("text, expected", [("200000,1000000", [200_000, 1_000_000]), ("0", []), ("", [])])
def test_sizes(text, expected):
    assert run._sizes(text) == expected
