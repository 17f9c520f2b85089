"""An interrupted training run continues exactly: for each of the three training stages, a run
stopped by SIGTERM, continued by the same command (with loader workers this time) and crashed by
an exception mid-epoch, continued from the resume file named by --resume and stopped by a
KeyboardInterrupt, then continued by the same command once more, ends bit for bit where the
uninterrupted run ends. (Ctrl-C to the process group and kill -9 through the stage script:
tests/test_faults.py; under torchrun: tests/test_distributed.py.)"""
import importlib
import os
import signal

import pytest
import torch

from tests.conftest import LOSS, SESSION, STAGES, assert_same_weights, stage_argv

pytestmark = pytest.mark.usefixtures("one_thread")


def stopping(monkeypatch, stage, at_call, how):
    """Wraps the stage's loss so that its `at_call`-th call raises SIGTERM (the step finishes,
    then the run checkpoints and exits), or an exception in the step (a crash: no checkpoint):
    a RuntimeError, or a KeyboardInterrupt (not an Exception: what Ctrl-C raises outside the run's
    handler)."""
    module = importlib.import_module(stage)
    real, calls = getattr(module, LOSS[stage]), []

    def loss(*a, **k):
        calls.append(1)
        if len(calls) == at_call:
            if how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)
            elif how == "KeyboardInterrupt":
                raise KeyboardInterrupt
            else:
                raise RuntimeError("killed for the test")
        return real(*a, **k)

    monkeypatch.setattr(module, LOSS[stage], loss)
    return module


def steps_logged(out):
    return [line.split()[1] for line in out.splitlines() if line.startswith("step ")]


@pytest.mark.parametrize("stage", STAGES)
def test_an_interrupted_run_continues_exactly(stage, toy, stage2, straight, tmp_path, monkeypatch, capsys):
    want = straight(stage)
    session = tmp_path / SESSION[stage]
    resume = tmp_path / f"{SESSION[stage]}.resume.pt"
    argv = stage_argv(stage, toy, tmp_path, stage2=stage2)
    # 1. SIGTERM (as a scheduler's) in step 2: the step ends, a checkpoint, one line
    with monkeypatch.context() as m:
        module = stopping(m, stage, 2, "SIGTERM")
        before = signal.getsignal(signal.SIGTERM)
        with pytest.raises(SystemExit) as e:
            module.main(argv)
    assert str(e.value) == f"interrupted by SIGTERM at step 2: wrote {resume}; run the same command to continue"
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone with it
    assert torch.load(resume, weights_only=True)["step"] == 2 and not session.with_suffix(".pth").exists()
    # 2. the same command again (two loader workers now) finds it; a crash in step 5, after the
    # checkpoints of step 3 (--ckpt_interval) and step 4 (the epoch end)
    capsys.readouterr()
    with monkeypatch.context() as m:
        module = stopping(m, stage, 3, "crash")
        with pytest.raises(RuntimeError, match="killed for the test"):
            module.main([*argv, "--num_workers", "2"])
    out = capsys.readouterr().out
    assert f"found {resume}: continuing from it (--restart starts over)" in out
    assert f"resumed from {resume} at step 2" in out and steps_logged(out) == ["3/6", "4/6"]
    assert torch.load(resume, weights_only=True)["step"] == 4 and not session.with_suffix(".pth").exists()
    # 3. --resume named: from step 4; a KeyboardInterrupt in step 6 (no checkpoint since step 4)
    with monkeypatch.context() as m:
        module = stopping(m, stage, 2, "KeyboardInterrupt")
        with pytest.raises(KeyboardInterrupt):
            module.main([*argv, "--resume", str(resume)])
    out = capsys.readouterr().out
    assert f"resumed from {resume} at step 4" in out and steps_logged(out) == ["5/6"]
    assert torch.load(resume, weights_only=True)["step"] == 4 and not session.with_suffix(".pth").exists()
    # what a kill during a checkpoint write leaves, and another session's temporary
    stale = tmp_path / f".{SESSION[stage]}.resume.abcd1234.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / f".{SESSION[stage]}2.resume.abcd1234.tmp.pt"
    other.write_bytes(b"x")
    # 4. the same command: from step 4 to the end
    module.main(argv)
    out = capsys.readouterr().out
    assert f"resumed from {resume} at step 4" in out and steps_logged(out) == ["5/6", "6/6"]
    assert not stale.exists() and other.exists()
    assert not resume.exists()  # a finished run's resume file goes
    assert_same_weights(torch.load(session.with_suffix(".pth"), weights_only=True), want)
