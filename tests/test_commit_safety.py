"""The commit of a staged output never deletes or replaces anything unless
overwrite was asked for (issue 12): the commit function, `StagedOutput` and
`Finalize` on temporary directories, without running a pipeline."""

import os

import pytest

from featurebridge.transforms import staging
from featurebridge.transforms.errors import OutputExistsError
from featurebridge.transforms.finalize import Finalize
from featurebridge.transforms.layout import MANIFEST
from featurebridge.transforms.staging import StagedOutput, commit_directory

APPEARED = r"appeared after this job started"


@pytest.fixture(params=["renameat2", "fallback"])
def how(request, monkeypatch):
    """Each test runs with renameat2(RENAME_NOREPLACE) and with the portable fallback."""
    if request.param == "renameat2":
        if staging._renameat2() is None:
            pytest.skip("renameat2 is not available here")
    else:
        monkeypatch.setattr(staging, "_renameat2", lambda: None)
    return request.param


def _staged(parent, name="out"):
    """A finished staging directory beside parent/name, as the stages leave it."""
    path = parent / f".{name}.staging-test"
    (path / "transform_fn").mkdir(parents=True)
    (path / MANIFEST).write_text('{"job": "new"}')
    return path


def _tree(path):
    """(relative path, content or link target) of every file and link under `path`."""
    found = []
    for d, dirs, files in os.walk(path):
        for name in files + dirs:
            full = os.path.join(d, name)
            if os.path.islink(full):
                found.append((os.path.relpath(full, path), "-> " + os.readlink(full)))
            elif os.path.isfile(full):
                with open(full) as f:
                    found.append((os.path.relpath(full, path), f.read()))
    return sorted(found)


def test_commit_moves_into_place_when_nothing_is_there(tmp_path, how):
    stage = _staged(tmp_path)
    final = tmp_path / "out"
    assert commit_directory(str(stage), str(final), overwrite=False) == str(final)
    assert not stage.exists() and (final / MANIFEST).read_text() == '{"job": "new"}'


@pytest.mark.parametrize("what", ["directory with files", "empty directory", "file", "dangling link", "link to a directory"])
def test_commit_refuses_what_appeared_after_the_start_and_keeps_both(tmp_path, how, what):
    stage = _staged(tmp_path)
    final = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    if what == "directory with files":
        final.mkdir()
        (final / "precious.txt").write_text("keep me")
    elif what == "empty directory":
        final.mkdir()
    elif what == "file":
        final.write_text("keep me")
    elif what == "dangling link":
        os.symlink(tmp_path / "nowhere", final)
    else:
        os.symlink(elsewhere, final)
    before = _tree(tmp_path)
    with pytest.raises(OutputExistsError) as info:
        commit_directory(str(stage), str(final), overwrite=False)
    message = str(info.value)
    assert repr(str(final)) in message and APPEARED in message
    assert f"The finished results are kept at {str(stage)!r}" in message
    assert "nothing there was deleted or replaced" in message
    assert _tree(tmp_path) == before  # nothing deleted, moved or replaced
    assert os.path.lexists(final) and (stage / MANIFEST).exists()
    assert os.path.islink(final) == (what in ("dangling link", "link to a directory"))


def test_overwrite_still_replaces_an_existing_directory(tmp_path, how):
    stage = _staged(tmp_path)
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    assert commit_directory(str(stage), str(final), overwrite=True) == str(final)
    assert _tree(final) == [(MANIFEST, '{"job": "new"}')]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no .old or staging left behind (exchange or fallback)


def test_finalize_commit_refuses_without_overwrite_and_replaces_with_it(tmp_path, how):
    stage = _staged(tmp_path)
    final = tmp_path / "out"
    final.mkdir()
    (final / "precious.txt").write_text("keep me")
    refusing = Finalize("{}", str(stage), str(final), {}, commit=True)  # overwrite defaults to False
    with pytest.raises(OutputExistsError, match=APPEARED):
        refusing._commit_to_final()
    assert _tree(final) == [("precious.txt", "keep me")] and (stage / MANIFEST).exists()
    replacing = Finalize("{}", str(stage), str(final), {}, commit=True, overwrite=True)
    assert replacing._commit_to_final() == str(final)
    assert _tree(final) == [(MANIFEST, '{"job": "new"}')] and not stage.exists()


def test_staged_output_keeps_refused_results_and_cleans_up_failures(tmp_path, how):
    final = tmp_path / "out"
    staged = StagedOutput(str(final))
    assert not staged.overwrite
    (tmp_path / "out").mkdir()  # appeared after the launcher's check
    (final / "precious.txt").write_text("keep me")
    with open(os.path.join(staged.path, MANIFEST), "w") as f:
        f.write("{}")
    with pytest.raises(OutputExistsError, match=APPEARED):
        staged.commit()
    staged.abort()  # what the CLIs do on any error: finished, refused results stay
    assert os.path.isfile(os.path.join(staged.path, MANIFEST))
    assert _tree(final) == [("precious.txt", "keep me")]

    # A run that failed before sealing its manifest leaves nothing behind.
    unfinished = StagedOutput(str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    unfinished.abort()
    assert not os.path.exists(unfinished.path)


def test_staged_output_with_overwrite_replaces(tmp_path, how):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    staged = StagedOutput(str(final), overwrite=True)
    with open(os.path.join(staged.path, MANIFEST), "w") as f:
        f.write("{}")
    assert staged.commit() == str(final)
    assert _tree(final) == [(MANIFEST, "{}")]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging, .old or lock file left behind


def test_the_launcher_still_refuses_an_existing_output_up_front(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError, match=r"already exists. Choose a new --output or pass --overwrite"):
        StagedOutput(str(tmp_path / "out"))


def test_cross_language_runs_commit_without_overwrite_and_stage_beside_the_output(tmp_path, monkeypatch):
    """AnalyzeAndTransformRows hands overwrite=False to AnalyzeToDirectory, and
    its staging directory is a sibling of output_dir (same parent)."""
    import apache_beam as beam

    from featurebridge.transforms import analyze, xlang
    from tests.expansion_helpers import SPEC, Raw

    seen = {}

    class Recorder(beam.PTransform):
        def __init__(self, spec, staging_dir, final_dir, **kwargs):
            super().__init__()
            seen.update(staging_dir=staging_dir, final_dir=final_dir, **kwargs)

        def expand(self, read):
            return {"transformed": read.batches, "directory": read.batches}

    monkeypatch.setattr(analyze, "AnalyzeToDirectory", Recorder)
    out = tmp_path / "root" / "out"
    stage = xlang.AnalyzeAndTransformRows(SPEC, str(out))
    p = beam.Pipeline()  # applied, never run
    _ = p | beam.Create([Raw("a", 1.0, "red", 1)]) | stage
    assert seen["overwrite"] is False and seen["final_dir"] == str(out)
    assert os.path.dirname(seen["staging_dir"]) == str(out.parent)
    assert os.path.basename(seen["staging_dir"]).startswith(".out.xlang-staging-")
    out.mkdir(parents=True)
    with pytest.raises(OutputExistsError, match=r"already exists"):
        xlang.AnalyzeAndTransformRows(SPEC, str(out))
    os.rmdir(out)
    os.symlink(tmp_path / "nowhere", out)  # a dangling link is something too
    with pytest.raises(OutputExistsError, match=r"already exists"):
        xlang.AnalyzeAndTransformRows(SPEC, str(out))


# ---------------------------------------------------------------- end to end (small DirectRunner runs)


def _kept_staging(parent, name="out", kind="staging"):
    kept = [d for d in os.listdir(parent) if d.startswith(f".{name}.{kind}-")]
    assert len(kept) == 1, os.listdir(parent)
    return os.path.join(parent, kept[0])


def test_a_cross_language_run_never_replaces_a_directory_that_appeared_after_expansion(tmp_path):
    import apache_beam as beam

    from featurebridge.transforms import xlang
    from tests.expansion_helpers import SPEC
    from tests.xlang_helpers import raw_rows

    out = tmp_path / "out"
    stage = xlang.AnalyzeAndTransformRows(SPEC, str(out))
    p = beam.Pipeline()
    _ = p | beam.Create(raw_rows()) | stage
    out.mkdir()  # after Expand, before the commit
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match=APPEARED) as info:
        p.run().wait_until_finish()
    assert _tree(out) == [("precious.txt", "keep me")]
    kept = _kept_staging(tmp_path, kind="xlang-staging")
    assert repr(kept) in str(info.value)
    assert {MANIFEST, "constants.json", "transform_fn"} <= set(os.listdir(kept))


def test_the_cli_analyze_without_overwrite_keeps_its_results_when_the_output_appears_meanwhile(tmp_path, monkeypatch):
    from featurebridge.pipelines.analyze import run_analyze
    from featurebridge.transforms import analyze

    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i * 0.5},{i % 2}\n" for i in range(40)))
    (tmp_path / "spec.yaml").write_text(
        "label: {column: y, kind: binary}\ncolumns:\n  - {name: x, type: float, transforms: [zscore]}\n"
        "  - {name: y, type: int}\n"
    )
    out = tmp_path / "out"

    class AppearsMeanwhile(analyze.AnalyzeToDirectory):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            out.mkdir()  # after the launcher's check, before the commit
            (out / "precious.txt").write_text("keep me")

    monkeypatch.setattr(analyze, "AnalyzeToDirectory", AppearsMeanwhile)
    with pytest.raises(OutputExistsError, match=APPEARED):
        run_analyze(str(tmp_path / "spec.yaml"), str(tmp_path / "data.csv"), str(out), ["--runner", "DirectRunner"])
    assert _tree(out) == [("precious.txt", "keep me")]
    assert MANIFEST in os.listdir(_kept_staging(tmp_path))
