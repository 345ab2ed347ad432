"""The statistics report (featurebridge.transforms.report, its drift measures
and the `featurebridge report` command) on hand-made analyze outputs
(tests.report_helpers), plus one check on the shared real run."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from featurebridge.pipelines import report as report_command
from featurebridge.transforms import drift
from featurebridge.transforms.errors import ArtifactError
from featurebridge.transforms.report import REPORT_HTML, load_run, write_report
from tests.report_helpers import HOSTILE, write_analyzed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(current dir, its feature names, baseline dir): the baseline is shifted
    (age, device drift), lacks `city`, and the current run has a hostile column."""
    current = tmp_path_factory.mktemp("current")
    baseline = tmp_path_factory.mktemp("baseline")
    names = write_analyzed(str(current), hostile=True)
    write_analyzed(str(baseline), seed=1, shift=0.5, drop=("city",))
    return str(current), names, str(baseline)


@pytest.fixture(scope="module")
def page(runs):
    current, _, baseline = runs
    path = write_report(current)
    with open(path, encoding="utf-8") as f:
        plain = f.read()
    drift_path = write_report(current, baseline, output=os.path.join(current, "drift.html"))
    with open(drift_path, encoding="utf-8") as f:
        return {"path": path, "plain": plain, "drift": f.read()}


def _sections(text):
    """{(section, feature name as escaped in the page): section html}."""
    found = {}
    for m in re.finditer(r'<section class="feature" id="[^"]+" data-feature="([^"]*)" data-section="(\w+)">(.*?)</section>',
                         text, re.S):
        found[(m.group(2), m.group(1))] = m.group(3)
    return found


def test_page_is_written_in_the_analyze_output(runs, page):
    assert page["path"] == os.path.join(runs[0], REPORT_HTML)
    assert not [n for n in os.listdir(runs[0]) if ".tmp" in n]


def test_every_feature_has_a_section_with_a_plot(runs, page):
    import html

    _, names, _ = runs
    sections = _sections(page["plain"])
    expected = {("raw", html.escape(n, quote=True)) for n in names["raw"]}
    expected |= {("transformed", n) for n in names["transformed"]}
    assert set(sections) == expected
    for key, body in sections.items():
        assert "<svg" in body, key


def test_page_is_self_contained(page):
    for text in (page["plain"], page["drift"]):
        assert "<script" not in text
        assert not re.search(r'\b(src|href)="(?!#|data:)', text)
        assert "url(http" not in text and "@import" not in text and "@font-face" not in text


def test_user_data_is_escaped(page):
    text = page["drift"]
    assert HOSTILE not in text
    assert "&lt;script&gt;document.title=" in text
    # In the warnings, the rejected reasons, the section title and the plot's labels.
    assert text.count("&lt;script&gt;document.title=") >= 4


def test_statistics_shown(page):
    text = page["plain"]
    age = _sections(text)[("raw", "age")]
    assert "missing as <code>NA</code>" in age and "missing as <code>&lt;empty&gt;</code>" in age and "2.3% (12)" in age
    assert re.search(r"<th>mean</th><td>3\d\.\d+</td>", age)
    device = _sections(text)[("raw", "device")]
    assert "mobile" in device and "<th>distinct</th><td>3</td>" in device
    # The label's classes, the rejected rows by column and reason, the warning, the row counts.
    assert re.search(r"<td>0</td><td class=\"n\">380</td><td class=\"n\">76.0%</td>", text)
    assert "<td><code>age</code></td><td>not a float</td><td class=\"n\">2</td>" in text
    assert "has one distinct value (3)" in text
    assert "<b>503</b> rows read, <b>500</b> used, <b>3</b> rejected" in text
    assert 'id="drift"' not in text


def test_drift_table(page):
    text = page["drift"]
    table = text[text.index('<section id="drift">'):]
    table = table[: table.index("</section>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    by_name = {re.sub(r"<[^>]+>", "", c[1]): c for c in cells}
    assert "only in this run" in by_name["city"][5] and "drift" in by_name["city"][5]
    assert by_name["device"][2] == "L-infinity" and "drift" in by_name["device"][5]
    assert by_name["age"][2] == "Jensen-Shannon" and float(by_name["age"][3]) > 0.01
    assert by_name["purchased"][3] == "0" and "ok" in by_name["purchased"][5]
    flagged = [re.sub(r"<[^>]+>", "", c[1]) for c in cells if "drift</span>" in c[5]]
    assert flagged[:2] == sorted(flagged[:2]) and set(flagged) >= {"city", "device"}
    # Overlaid plots: both runs' legends in the age plot.
    age = _sections(text)[("raw", "age")]
    assert "baseline" in age and "this run" in age


def test_l_infinity_distance():
    assert drift.l_infinity_distance({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(0.25)
    # Shares of all values (top values only): a value absent on one side counts 0.
    assert drift.l_infinity_distance({"a": 5}, {"b": 5}, total=10, baseline_total=10) == pytest.approx(0.5)
    assert drift.l_infinity_distance({}, {}) == 0.0


def test_jensen_shannon_divergence():
    same = [(0, 1, 5), (1, 2, 5)]
    assert drift.jensen_shannon_divergence(same, same) == pytest.approx(0.0)
    assert drift.jensen_shannon_divergence([(0, 1, 5)], [(2, 3, 5)]) == pytest.approx(1.0)
    # Two buckets vs one covering both, spread evenly: the same distribution.
    assert drift.jensen_shannon_divergence(same, [(0, 2, 7)]) == pytest.approx(0.0, abs=1e-12)
    # Half the mass moved: p = (1/2, 1/2, 0), q = (0, 1/2, 1/2).
    assert drift.jensen_shannon_divergence([(0, 2, 2)], [(1, 3, 2)]) == pytest.approx(0.5)
    # NaN counts are one more bucket.
    assert drift.jensen_shannon_divergence(same, same, nan=10) > 0.1
    assert drift.jensen_shannon_divergence([], []) == 0.0
    assert drift.jensen_shannon_divergence(same, []) == 1.0


def test_binned_keeps_counts_and_point_masses():
    edges = np.array([0.0, 1.0, 2.0, 4.0])
    assert np.allclose(drift.binned([(0, 4, 8), (4, 4, 3), (1, 2, 1)], edges), [2, 3, 4 + 3])
    # Beyond the edges: left out, or in the end bins with clamp.
    assert np.allclose(drift.binned([(-2, 2, 4), (9, 9, 1)], edges), [1, 1, 0])
    assert np.allclose(drift.binned([(-2, 2, 4), (9, 9, 1)], edges, clamp=True), [3, 1, 1])


def test_grid():
    edges, note = drift.grid([(0, 1, 5), (1, 2, 5)])
    assert list(edges) == [0, 1, 2] and note == ""  # a lone equal-width histogram: its own buckets
    edges, _ = drift.grid([(0, 0, 5), (0, 7, 5)], [(2, 9, 1)], integer=True)
    assert list(edges) == [x - 0.5 for x in range(11)]  # one bin per whole number
    # A long tail (the top percentile bucket) is left out of the range, and said.
    fine = [(i, i + 1, 1) for i in range(99)] + [(99, 1000, 1)]
    edges, note = drift.grid(fine)
    assert edges[-1] == 99 and "the top 1% of values (up to 1000)" in note


def test_manifest_given_instead_of_the_file(tmp_path):
    write_analyzed(str(tmp_path))
    os.remove(tmp_path / "manifest.json")
    text = open(write_report(str(tmp_path), manifest={"rows": {"read": 7, "used": 6, "rejected": 1,
                                                              "rejected_by": {"x: bad": 1}},
                                                     "pipeline_options": {"output": "/final/out"}})).read()
    assert "<b>7</b> rows read" in text and "<td>bad</td>" in text
    assert "<title>featurebridge statistics: /final/out</title>" in text  # not the staging directory
    text = open(write_report(str(tmp_path))).read()
    assert "<b>500</b> rows in the statistics (no manifest yet)" in text


def test_features_without_values(tmp_path):
    from tests.report_helpers import numeric_feature, string_feature, write_stats

    write_stats(str(tmp_path / "pre_transform_stats" / "FeatureStats.pb"),
                 [numeric_feature("empty_num", [], missing=4), string_feature("empty_str", {}, missing=4)], 4)
    text = open(write_report(str(tmp_path))).read()
    assert text.count("no values") == 2 and "100.0% (4)" in text
    assert "The spec names no label" in text and "Transformed features (0)" in text


def test_errors_say_what_to_do(tmp_path, capsys):
    with pytest.raises(ArtifactError, match="is not a directory"):
        load_run(str(tmp_path / "nope"))
    (tmp_path / "manifest.json").write_text('{"job": "train"}')
    with pytest.raises(ArtifactError, match=r"is not an analyze output \(its manifest.json is of a 'train' run\)"):
        load_run(str(tmp_path))
    (tmp_path / "constants.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"an analyze output without statistics.*run `featurebridge analyze` again"):
        load_run(str(tmp_path))
    os.makedirs(tmp_path / "pre_transform_stats")
    (tmp_path / "pre_transform_stats" / "FeatureStats.pb").write_bytes(b"\xff\xff not a proto")
    with pytest.raises(ArtifactError, match="Cannot read the statistics"):
        load_run(str(tmp_path))
    assert report_command.main([str(tmp_path / "nope")]) == 2
    assert "featurebridge report: error:" in capsys.readouterr().err


def test_command(runs, tmp_path, capsys, monkeypatch):
    current, _, baseline = runs
    out = str(tmp_path / "r.html")
    assert report_command.main([current, "--baseline", baseline, "--output", out]) == 0
    assert f"report: {out} (drift against {baseline})" in capsys.readouterr().out
    assert 'id="drift"' in open(out).read()
    # By default in the current directory: the analyze output's own (sealed) page stays as it is.
    monkeypatch.chdir(tmp_path)
    before = open(os.path.join(current, REPORT_HTML)).read() if os.path.exists(os.path.join(current, REPORT_HTML)) else None
    assert report_command.main([current]) == 0
    assert os.path.exists(tmp_path / "report.html")
    assert (open(os.path.join(current, REPORT_HTML)).read() if before is not None else None) == before
    assert report_command.main([current, "--output", str(tmp_path / "no" / "r.html")]) == 2
    assert "its directory does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report_command.main(["--help"])
    assert "--baseline OTHER" in capsys.readouterr().out


def test_no_tensorflow_imported(runs, tmp_path):
    code = ("import sys; from featurebridge.transforms.report import write_report; "
            f"write_report({runs[0]!r}, {runs[2]!r}, output={str(tmp_path / 'r.html')!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_transform', "
            "'matplotlib.pyplot')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_real_analyze_output(job, tmp_path):
    """The shared demo run (tests.job_helpers): its own statistics, reported."""
    analyzed = job.analyzed
    if not os.path.exists(os.path.join(analyzed, "pre_transform_stats", "FeatureStats.pb")):
        pytest.skip("this analyze pass writes no statistics yet")
    # The analyze pass wrote the page itself, before sealing its manifest.
    with open(os.path.join(analyzed, "manifest.json")) as f:
        assert REPORT_HTML in json.load(f)["outputs"]
    with open(os.path.join(analyzed, REPORT_HTML), encoding="utf-8") as f:
        title = re.search(r"<title>(.*?)</title>", f.read()).group(1)
    assert ".staging" not in title and title.endswith(os.path.basename(analyzed))
    run = load_run(analyzed)
    text = open(write_report(analyzed, analyzed, output=str(tmp_path / "r.html"))).read()
    sections = _sections(text)
    assert {n for s, n in sections if s == "raw"} == set(job.spec().column_names)
    assert len(sections) == len(run.raw) + len(run.transformed)
    assert all("<svg" in body for body in sections.values())
    assert "<b>0</b> of" in text  # a run against itself: no drift
