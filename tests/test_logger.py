import argparse
import glob
import os
import re
from contextlib import closing

import pytest
import torch

import tool.engine.training as logger_mod
from tests.conftest import stage_argv
from tool.engine.runtime import progress
from tool.engine.training import RunLogger


def _args():
    return argparse.Namespace(lr=0.01, batch_size=8, session_name="run1", flip=True)


def test_log_file_has_timestamp_flags_and_messages(tmp_path):
    with closing(RunLogger(tmp_path, "run1", flags=vars(_args()), tensorboard=False)) as log:
        log.info("epoch 0 loss 1.5")
    lines = (tmp_path / "run1.log").read_text().splitlines()
    assert lines[0].startswith("=== run1 started ")
    assert lines[1:5] == ["batch_size: 8", "flip: True", "lr: 0.01", "session_name: run1"]
    assert lines[-1] == "epoch 0 loss 1.5"


def test_log_file_is_appended(tmp_path):
    for msg in ("first", "second"):
        with closing(RunLogger(tmp_path, "run1", tensorboard=False)) as log:
            log.info(msg)
    text = (tmp_path / "run1.log").read_text()
    assert text.count("=== run1 started") == 2
    assert text.index("first") < text.index("second")


def test_info_prints(tmp_path, capsys):
    with closing(RunLogger(tmp_path, "s", tensorboard=False)) as log:
        log.info("hello")
    assert capsys.readouterr().out == "hello\n"


def test_tensorboard_events_written(tmp_path):
    pytest.importorskip("tensorboardX")
    with closing(RunLogger(tmp_path, "run1")) as log:
        assert log.writer is not None
        log.scalars(3, {"loss": torch.tensor(0.5), "lr": 0.01})
        log.images(3, "cams", torch.rand(2, 3, 8, 8))
    events = glob.glob(os.path.join(tmp_path, "run1", "events.out.tfevents*"))
    assert len(events) == 1 and os.path.getsize(events[0]) > 0


def test_without_tensorboardx_warns_once_and_works(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(logger_mod, "SummaryWriter", None)
    with closing(RunLogger(tmp_path, "run1", flags=vars(_args()))) as log:
        log.scalars(0, {"loss": 1.0})
        log.images(0, "x", torch.zeros(1, 3, 4, 4))
        log.info("still logging")
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if "tensorboardX" in line] == [
        "warning: tensorboardX is not installed; logging to text only"]
    assert "still logging" in (tmp_path / "run1.log").read_text()
    assert not (tmp_path / "run1").exists()


def test_a_log_line_shows_the_means_of_the_terms_since_the_last_line(toy, tmp_path, monkeypatch, capsys):
    import train_seam

    real, calls = train_seam.seam_losses, []

    def probed(*a, **k):  # one more term, 1, 2, 3, 4 at the four steps
        calls.append(1)
        return {**real(*a, **k), "probe": torch.tensor(float(len(calls)))}

    monkeypatch.setattr(train_seam, "seam_losses", probed)
    train_seam.main(stage_argv("train_seam", toy, tmp_path, "--max_step", "4", "--log_interval", "2"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [re.search(r" probe=(\S+) ", line)[1] for line in lines] == ["1.5000", "3.5000"]  # started over


def test_progress_draws_on_stderr_and_an_int_is_a_total(capsys):
    # stdout carries log lines and results, so the bar must stay on stderr
    assert list(progress([1, 2, 3], desc="cams")) == [1, 2, 3]
    bar = progress(10, desc="imgs")  # a count to update by hand, not range(10)
    bar.update(4)
    bar.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert "cams: 100%" in err and "3/3" in err
    assert "imgs:  40%" in err and "4/10" in err


def test_progress_disabled_iterates_without_a_bar(capsys):
    # torchrun ranks other than 0: same items, nothing drawn
    assert list(progress(iter([1, 2]), desc="x", enabled=False)) == [1, 2]
    bar = progress(5, desc="y", enabled=False)
    bar.update(5)
    bar.close()
    assert capsys.readouterr() == ("", "")
