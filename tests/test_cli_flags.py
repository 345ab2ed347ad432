"""Unknown or misspelt flags: every command refuses them before any work, with
exit status 2 and the closest known flag; Beam's own flags still pass. Fast:
no pipeline runs, no training (each call fails on its flags or a missing input)."""

import os
import subprocess
import sys

import pytest

from featurebridge.pipelines import cli
from featurebridge.pipelines.flags import UnknownOptionError, check_options, unknown_options
from featurebridge.pipelines.options import AnalyzeOptions, RunArgs, TrainArgs
from featurebridge.pipelines.runner_config import RunnerConfigError, expand_runner_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "runner_configs")
BEAM_FLAGS = ["--direct_num_workers", "1", "--runner", "DirectRunner", "--temp_location", "/tmp/x"]


def _refused(capsys, argv):
    """Runs the CLI; asserts exit status 2 and returns stderr's lines."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.strip().splitlines()


def _pointer(command, beam=True):
    also = "; any Beam pipeline option is accepted too" if beam else ""
    return f"See `featurebridge {command} --help` for its options{also}."


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["analyze", "--input", "in.csv", "--analyser", "tft", "--spec", "s.yaml"],
            "featurebridge analyze: unknown option --analyser; did you mean --analyzer?",
        ),
        (
            ["predict", "--model", "m", "--max_inference_bach", "8"],
            "featurebridge predict: unknown option --max_inference_bach; did you mean --max_inference_batch?",
        ),
        (
            ["run", "--input", "in.csv", "--holdot=last.csv"],
            "featurebridge run: unknown option --holdot; did you mean --holdout?",
        ),
        (
            ["demo", "--row", "1000"],
            "featurebridge demo: unknown option --row; did you mean --rows?",
        ),
    ],
)
def test_a_misspelt_flag_exits_2_with_a_suggestion(tmp_path, capsys, argv, line):
    out = tmp_path / "out"
    lines = _refused(capsys, [*argv, "--output", str(out)])
    assert lines == [line, _pointer(argv[0])]
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag", [["--runner", "Flinkrunner"], ["--runner=Foo"]])
def test_an_unknown_runner_is_a_usage_error(tmp_path, capsys, flag):
    from featurebridge.pipelines.cli import main

    out = tmp_path / "out"
    assert main(["analyze", "--input", "x.csv", "--spec", "s.yaml", "--output", str(out), *flag]) == 2
    err = capsys.readouterr().err
    assert "is not a runner Beam knows" in err and "DirectRunner" in err, err
    assert not out.exists()


def test_train_refuses_typos_and_beam_flags(tmp_path, capsys):
    """Train runs no Beam pipeline: a Beam flag is as unknown as a typo."""
    argv = ["train", "--analyzed", str(tmp_path), "--output", str(tmp_path / "m"), "--epoch", "3"]
    assert _refused(capsys, argv) == [
        "featurebridge train: unknown option --epoch; did you mean --epochs?",
        _pointer("train", beam=False),
    ]
    assert _refused(capsys, ["train", "--learning-rate", "0.1", "--runner", "DirectRunner"]) == [
        "featurebridge train: unknown option --learning-rate; did you mean --learning_rate?",
        "featurebridge train: unknown option --runner",  # nothing close: no suggestion
        _pointer("train", beam=False),
    ]


def test_every_unknown_flag_is_named_once_without_a_far_fetched_suggestion(capsys):
    lines = _refused(capsys, ["analyze", "--zzzzzz", "--no_direct_num_workers", "--zzzzzz=1"])
    assert lines[0] == "featurebridge analyze: unknown option --zzzzzz"
    assert lines[1].startswith("featurebridge analyze: unknown option --no_direct_num_workers")
    assert lines[2:] == [_pointer("analyze")]


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["analyze", "--input", "in.csv", "--output", "o", *BEAM_FLAGS], "--spec is required"),
        (["analyze", "--input", "in.csv", "--analyzer=tft", "--no_save_main_session", *BEAM_FLAGS], "--spec is required"),
        (["predict", "--input", "in.csv", "--max_inference_batch", "8", *BEAM_FLAGS], "--model is required"),
        (["run", "--input", "in.csv", "--holdout", "h.csv", *BEAM_FLAGS], "--spec is required"),
        (["demo", "--rows", "10", *BEAM_FLAGS], "at least 50 rows per file"),
        (["train", "--analyzed", "a", "--learning_rate", "-0.5", "--epochs", "0"], "--output is required"),
    ],
)
def test_known_flags_are_not_refused(tmp_path, capsys, argv, reason):
    argv = [a.replace("/tmp/x", str(tmp_path / "x")) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert reason in err
    assert "unknown option" not in err


@pytest.mark.parametrize("command", ["analyze", "predict", "run"])
def test_a_valid_runner_config_still_works(capsys, command):
    argv = [command, "--runner_config", os.path.join(CONFIGS, "direct.yaml"), "--input", "in.csv", "--direct_num_workers=2"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "is required" in err and "unknown option" not in err


@pytest.mark.parametrize("name", ["direct", "flink-local.yaml"])
def test_runner_config_takes_a_shipped_config_by_name(tmp_path, monkeypatch, name):
    """A name that is no file here is a config shipped with the package; an
    unknown one is refused, listing the shipped names."""
    monkeypatch.chdir(tmp_path)  # no such file here: the shipped config is used
    path = os.path.join(CONFIGS, name if name.endswith(".yaml") else f"{name}.yaml")
    assert expand_runner_config(["--runner_config", name, "--input", "x"]) == expand_runner_config(
        ["--runner_config", path, "--input", "x"]
    )
    with pytest.raises(RunnerConfigError, match=r"Runner config 'flinkk' does not exist\. .*: dataflow, direct, flink, "):
        expand_runner_config(["--runner_config", "flinkk"])


@pytest.mark.parametrize("name", ["direct.yaml", "flink.yaml", "flink-local.yaml", "portable.yaml", "spark.yaml"])
def test_runner_config_flags_are_all_known(name):
    """What a config expands to (Flink's Java-only options too) passes the check
    that analyze and predict make again when `run` hands them its Beam flags."""
    argv = expand_runner_config(["--runner_config", os.path.join(CONFIGS, name), "--input", "x"])
    assert unknown_options(argv, [AnalyzeOptions]) == []


def test_flag_forms_and_values():
    assert unknown_options(["--analyser=tft", "--analyser", "tft", "--spec", "s"], [AnalyzeOptions]) == ["--analyser"]
    # A value is never read as a flag where argparse reads it as a value.
    assert unknown_options(["--environment_config", "-x --y", "--job_name", "-", "--direct_num_workers", "-1"]) == []
    assert unknown_options(["--learning_rate", "-1e-3", "--seed", "-7"], [TrainArgs], beam=False) == []
    # The value of an unknown flag is not a flag; after `--` nothing is.
    assert unknown_options(["--color", "blue", "--", "--whatever"]) == ["--color"]
    # A flag that needs a value cannot take the next flag as one (argparse would not).
    assert unknown_options(["--temp_location", "--tmp", "/t"]) == ["--tmp"]
    # Beam defines --no_x flags one by one.
    assert unknown_options(["--no_save_main_session", "--no_use_public_ips"]) == []
    assert unknown_options(["--no_direct_num_workers", "--no_analyzer"], [AnalyzeOptions]) == [
        "--no_direct_num_workers", "--no_analyzer",
    ]
    # Runner-only (Java) options and --runner_config are known; train knows no Beam flag.
    assert unknown_options(["--checkpointing_interval", "5000", "--runner_config=f.yaml"]) == []
    assert unknown_options(["--runner", "DirectRunner"], [TrainArgs], beam=False) == ["--runner"]
    # Names given as strings count as the command's own flags.
    assert unknown_options(["--holdout", "h", "--extra"], ["--holdout", "extra"]) == []


def test_check_options_raises_with_the_suggestions():
    with pytest.raises(UnknownOptionError) as caught:
        check_options("run", ["--input", "x", "--train_batch_sise", "64", "--direct-num-workers", "2"], [RunArgs])
    assert caught.value.unknown == [
        ("--train_batch_sise", "--train_batch_size"),
        ("--direct-num-workers", "--direct_num_workers"),
    ]
    assert str(caught.value).splitlines()[-1] == _pointer("run")


def test_the_process_exits_2_before_importing_tensorflow(tmp_path):
    code = (
        "import sys; from featurebridge.pipelines import cli; rc = cli.main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "predict", "--modle", str(tmp_path), "--input", "x", "--output", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "featurebridge predict: unknown option --modle; did you mean --model?" in proc.stderr.splitlines()


# ---------------------------------------------------------------- --quiet / --log_level (every command)


def test_global_log_flags_are_taken_out_wherever_they_stand():
    from featurebridge.pipelines.flags import split_global_flags

    assert split_global_flags(["--quiet", "--input", "x"]) == ("warning", ["--input", "x"])
    assert split_global_flags(["--input", "x", "--log_level", "DEBUG"]) == ("debug", ["--input", "x"])
    assert split_global_flags(["--log_level=error", "--quiet"]) == ("warning", [])  # the last wins
    assert split_global_flags(["--input", "x", "--", "--quiet"]) == (None, ["--input", "x", "--", "--quiet"])
    from featurebridge.transforms.errors import UsageError

    with pytest.raises(UsageError, match=r"--log_level 'loud' is not a level; use one of debug, info, warning, error"):
        split_global_flags(["--log_level", "loud"])
    with pytest.raises(UsageError, match="--log_level needs a value"):
        split_global_flags(["--log_level", "--input", "x"])


def test_log_flags_before_or_after_the_command_never_reach_beam(tmp_path, capsys):
    # Each run stops at the demo's own check (rows), before TensorFlow: the flags were accepted.
    for argv in (
        ["--quiet", "demo", "--rows", "10", "--output", str(tmp_path / "d")],
        ["demo", "--log_level", "warning", "--rows", "10", "--output", str(tmp_path / "d")],
        ["--log_level=error", "demo", "--rows", "10", "--output", str(tmp_path / "d")],
    ):
        err = "\n".join(_refused(capsys, argv))
        assert "at least 50 rows per file" in err and "unknown option" not in err, argv
    assert _refused(capsys, ["--log_level", "loud", "analyze"]) == [
        "featurebridge: error: --log_level 'loud' is not a level; use one of debug, info, warning, error."
    ]
    lines = _refused(capsys, ["analyze", "--input", "x.csv", "--quite", "--spec", "s.yaml", "--output", str(tmp_path / "o")])
    assert lines[0] == "featurebridge analyze: unknown option --quite; did you mean --quiet?"
    assert cli.main(["--help"]) == 0
    assert "--log_level LEVEL" in capsys.readouterr().out
