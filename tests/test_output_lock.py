"""One run at a time per output directory, and nothing left behind (issue 13):
`OutputLock` / `StagedOutput` against real processes that hold the lock,
the start-up clean-up of leftovers, the overwrite commit by exchange, and one
end-to-end check with two `featurebridge analyze` processes."""

import ctypes
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from featurebridge.transforms import staging
from featurebridge.transforms.errors import OutputExistsError
from featurebridge.transforms.layout import MANIFEST
from featurebridge.transforms.staging import OutputLock, OutputLockedError, StagedOutput, commit_directory

LOCKED = r"Another featurebridge run \(pid {pid} on .+, started .+\) is writing {out}\. Wait for it to finish, or choose another --output\."

# A process that takes a StagedOutput on argv[1] (argv[2] == "overwrite": with
# overwrite), prints its staging path, then does what stdin says: commit (with
# a sealed manifest), abort, or exit (without releasing anything).
HOLDER = r"""
import os, sys
from featurebridge.transforms.staging import StagedOutput
staged = StagedOutput(sys.argv[1], overwrite=sys.argv[2] == "overwrite")
with open(os.path.join(staged.path, "partial.txt"), "w") as f:
    f.write("half-written")
print(staged.path, flush=True)
what = sys.stdin.readline().strip()
if what == "commit":
    with open(os.path.join(staged.path, "manifest.json"), "w") as f:
        f.write('{"job": "holder"}')
    staged.commit()
elif what == "abort":
    staged.abort()
print("done", flush=True)
"""


class Holder:
    """A process holding the lock on `out` (once started, until told otherwise)."""

    def __init__(self, out, overwrite=False):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(out), "overwrite" if overwrite else "new"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.staging = self.proc.stdout.readline().strip()
        assert self.staging, self.proc.stderr.read()

    @property
    def pid(self):
        return self.proc.pid

    def tell(self, what):
        out, err = self.proc.communicate(what + "\n", timeout=60)
        assert self.proc.returncode == 0 and out.strip() == "done", err

    def kill(self):
        self.proc.kill()  # SIGKILL: no clean-up of any kind runs
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc.stdin.close()


@pytest.fixture
def holders():
    started = []

    def start(out, overwrite=False):
        started.append(Holder(out, overwrite))
        return started[-1]

    yield start
    for h in started:
        if h.proc.poll() is None:
            h.kill()


def _hidden(parent):
    return sorted(p for p in os.listdir(parent) if p.startswith("."))


def _sealed(path, job="new"):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, MANIFEST), "w") as f:
        f.write(json.dumps({"job": job}))


def _job(path):
    with open(os.path.join(path, MANIFEST)) as f:
        return json.load(f)["job"]


# ---------------------------------------------------------------- the lock


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_a_second_run_on_the_same_output_is_refused_with_the_holders_pid(tmp_path, holders, overwrite):
    out = tmp_path / "out"
    holder = holders(out, overwrite=overwrite)
    with pytest.raises(OutputLockedError, match=LOCKED.format(pid=holder.pid, out=repr(str(out)))):
        StagedOutput(str(out), overwrite=overwrite)
    with pytest.raises(OutputExistsError):  # callers that catch OutputExistsError still do
        OutputLock(str(out))
    # The refused run touched nothing: the holder's staging directory and lock are as they were.
    assert _hidden(tmp_path) == sorted([".out.lock", os.path.basename(holder.staging)])
    with open(holder.staging + "/partial.txt") as f:
        assert f.read() == "half-written"
    OutputLock(str(tmp_path / "other")).release()  # another output is not locked


@pytest.mark.parametrize("end", ["commit", "abort", "exit", "SIGKILL"])
def test_the_lock_is_free_once_the_holder_commits_aborts_or_exits(tmp_path, holders, end):
    out = tmp_path / "out"
    holder = holders(out)
    if end == "SIGKILL":
        holder.kill()
    else:
        holder.tell(end)
    with OutputLock(str(out)) as lock:
        assert lock.held
    assert not os.path.exists(tmp_path / ".out.lock")  # released: the file is deleted too
    assert os.path.isdir(out) == (end == "commit")


def test_commit_abort_and_release_release_the_lock_in_this_process(tmp_path):
    out = tmp_path / "out"
    first = StagedOutput(str(out))
    assert first.locked and os.path.isfile(tmp_path / ".out.lock")
    with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on "):
        StagedOutput(str(out))  # a second open file: refused even in the same process
    _sealed(first.path)
    first.commit()
    assert not first.locked and not os.path.exists(tmp_path / ".out.lock")
    first.release()  # idempotent

    second = StagedOutput(str(out), overwrite=True)
    second.abort()
    assert not second.locked and not os.path.exists(second.path)
    third = StagedOutput(str(out), overwrite=True)
    third.release()
    third.release()
    StagedOutput(str(out), overwrite=True).abort()
    assert _hidden(tmp_path) == []


def test_a_run_that_locked_a_file_the_holder_just_deleted_tries_again(tmp_path, monkeypatch):
    """The unlink race: B opens the lock file, A releases (deletes it, unlocks),
    B's flock then succeeds on a file no longer at the path: B must not count
    that as holding the lock."""
    out = str(tmp_path / "out")
    first = OutputLock(out)
    real_flock = staging.fcntl.flock
    calls = []

    def flock_after_the_holder_released(fd, op):
        calls.append(op)
        if len(calls) == 1:
            first.release()  # between B's open and B's flock
        return real_flock(fd, op)

    monkeypatch.setattr(staging.fcntl, "flock", flock_after_the_holder_released)
    second = OutputLock(out)
    monkeypatch.setattr(staging.fcntl, "flock", real_flock)
    assert sum(1 for op in calls if op & staging.fcntl.LOCK_EX) == 2  # locked twice: the first file was gone
    assert os.stat(second.path).st_ino == os.fstat(second._fd).st_ino
    with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on "):
        OutputLock(out)
    second.release()


# ---------------------------------------------------------------- leftovers


def test_a_killed_runs_staging_directory_is_removed_at_the_next_start(tmp_path, holders, caplog):
    out = tmp_path / "out"
    holder = holders(out)
    holder.kill()
    assert os.path.isfile(os.path.join(holder.staging, "partial.txt"))  # what kill -9 leaves today
    other = tmp_path / ".other.staging-0123456789ab"  # another output's: not ours to touch
    other.mkdir()
    caplog.set_level(logging.INFO, logger=staging.__name__)
    staged = StagedOutput(str(out))
    assert not os.path.exists(holder.staging) and other.is_dir()
    assert (
        f"Removed 1 leftover staging directory of earlier failed or interrupted runs of {out}: {holder.staging}"
        in caplog.messages
    )
    staged.abort()


def test_finished_results_are_kept_and_only_exact_names_are_removed(tmp_path, caplog):
    out = tmp_path / "out"
    finished = tmp_path / ".out.staging-00000000000a"  # a refused commit's results: sealed manifest
    _sealed(finished, "refused")
    unfinished = tmp_path / ".out.staging-00000000000b"
    (unfinished / "transform_fn").mkdir(parents=True)
    old = tmp_path / ".out.staging-00000000000c.old"  # an interrupted overwrite's old tree
    _sealed(old, "old")
    stray_file = tmp_path / ".out.staging-00000000000d"
    stray_file.write_text("x")
    untouched = [".out.staging-test", ".out.staging-ABCDEF012345", ".out.staging-0123456789abc", ".outx.staging-0123456789ab", ".out.staging-0123456789ab.older"]
    for name in untouched:
        (tmp_path / name).mkdir()
    out.mkdir()  # the output exists: an .old beside it is garbage
    caplog.set_level(logging.INFO, logger=staging.__name__)
    StagedOutput(str(out), overwrite=True).abort()
    assert _hidden(tmp_path) == sorted(untouched + [finished.name])
    assert _job(finished) == "refused"
    removed = sorted(str(p) for p in (unfinished, old, stray_file))
    assert (
        f"Removed 3 leftover staging directories of earlier failed or interrupted runs of {out}: " + ", ".join(removed)
        in caplog.messages
    )
    assert any(m.startswith(f"Kept {finished}: finished results") for m in caplog.messages)


def test_the_previous_output_is_put_back_after_an_overwrite_killed_between_its_renames(tmp_path, caplog):
    """Only the fallback (no exchange) has that moment: OUT is missing, the
    previous output is at STAGING.old, the new results at STAGING."""
    out = tmp_path / "out"
    _sealed(tmp_path / ".out.staging-00000000000a.old", "previous")
    _sealed(tmp_path / ".out.staging-00000000000a", "new")
    caplog.set_level(logging.INFO, logger=staging.__name__)
    with pytest.raises(OutputExistsError, match="already exists"):
        StagedOutput(str(out))  # put back, so a run without --overwrite is refused
    assert _job(out) == "previous"
    assert _hidden(tmp_path) == [".out.staging-00000000000a"]  # the new results: kept, named
    assert any("Put back" in m and "interrupted" in m for m in caplog.messages)


# ---------------------------------------------------------------- the overwrite commit


@pytest.fixture
def exchanges(monkeypatch):
    """renameat2 as it is, recording each call's flags (skips where it is missing)."""
    real = staging._renameat2()
    if real is None:
        pytest.skip("renameat2 is not available here")
    flags = []

    def recording(*args):
        flags.append(args[-1])
        return real(*args)

    monkeypatch.setattr(staging, "_renameat2", lambda: recording)
    return flags


def test_the_overwrite_commit_swaps_in_one_step_and_leaves_nothing_behind(tmp_path, exchanges):
    out = tmp_path / "out"
    _sealed(out, "old")
    (out / "old-only.txt").write_text("old")
    stage = tmp_path / ".out.staging-0123456789ab"
    _sealed(stage, "new")
    assert commit_directory(str(stage), str(out), overwrite=True) == str(out)
    assert staging._RENAME_EXCHANGE in exchanges
    assert _job(out) == "new" and sorted(os.listdir(out)) == [MANIFEST]
    assert os.listdir(tmp_path) == ["out"]


def test_an_overwrite_interrupted_before_deleting_the_old_tree_is_cleaned_up_next_time(tmp_path, exchanges, monkeypatch):
    out = tmp_path / "out"
    _sealed(out, "old")
    first = StagedOutput(str(out), overwrite=True)
    _sealed(first.path, "new")

    def interrupted(path):
        raise KeyboardInterrupt  # killed after the swap, before the delete

    monkeypatch.setattr(staging, "_remove", interrupted)
    with pytest.raises(KeyboardInterrupt):
        first.commit()
    first.release()
    monkeypatch.undo()
    assert _job(out) == "new"  # the output is complete at every moment
    assert _hidden(tmp_path) == [os.path.basename(first.path) + ".old"]
    StagedOutput(str(out), overwrite=True).abort()
    assert os.listdir(tmp_path) == ["out"] and _job(out) == "new"


@pytest.mark.parametrize("missing", ["exchange", "renameat2"])
def test_the_overwrite_commit_without_the_exchange(tmp_path, monkeypatch, missing):
    """An old kernel or a filesystem without RENAME_EXCHANGE (EINVAL), or no renameat2 at all."""
    real = staging._renameat2()
    if missing == "renameat2" or real is None:
        monkeypatch.setattr(staging, "_renameat2", lambda: None)
    else:
        def no_exchange(*args):
            if args[-1] & staging._RENAME_EXCHANGE:
                ctypes.set_errno(errno.EINVAL)
                return -1
            return real(*args)

        monkeypatch.setattr(staging, "_renameat2", lambda: no_exchange)
    out = tmp_path / "out"
    _sealed(out, "old")
    staged = StagedOutput(str(out), overwrite=True)
    _sealed(staged.path, "new")
    assert staged.commit() == str(out)
    assert _job(out) == "new" and os.listdir(tmp_path) == ["out"]
    # A file (or link) at the destination is replaced too, never followed.
    elsewhere = tmp_path / "elsewhere"
    _sealed(elsewhere, "keep")
    os.rename(out, tmp_path / "gone")
    os.symlink(elsewhere, out)
    staged = StagedOutput(str(out), overwrite=True)
    _sealed(staged.path, "new")
    staged.commit()
    assert not os.path.islink(out) and _job(out) == "new" and _job(elsewhere) == "keep"


# ---------------------------------------------------------------- end to end


def _holder_written(lock):
    try:
        return bool(lock.read_text().strip())
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_two_cli_analyze_runs_on_the_same_new_output(tmp_path):
    """The second is refused at its start while the first holds the lock; the
    first (paused meanwhile with SIGSTOP, so the order is certain) finishes."""
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i * 0.5},{i % 2}\n" for i in range(40)))
    (tmp_path / "spec.yaml").write_text(
        "label: {column: y, kind: binary}\ncolumns:\n  - {name: x, type: float, transforms: [zscore]}\n"
        "  - {name: y, type: int}\n"
    )
    exe = os.path.join(os.path.dirname(sys.executable), "featurebridge")
    argv = [exe, "analyze", "--input", "data.csv", "--spec", "spec.yaml", "--output", "out"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / ".out.lock"
        deadline = time.monotonic() + 240  # a guard against hanging, not a measurement
        while not _holder_written(lock):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    out_dir = os.path.join(os.path.realpath(tmp_path), "out")  # as the CLI's working directory names it
    assert second.returncode == 2, second.stderr
    assert (
        f"featurebridge analyze: error: Another featurebridge run (pid {first.pid} on " in second.stderr
        and f") is writing {out_dir!r}. Wait for it to finish, or choose another --output." in second.stderr
    ), second.stderr
    assert first.returncode == 0, err
    assert _job(out_dir) == "analyze"
    assert _hidden(tmp_path) == []  # no staging directory, no lock file
