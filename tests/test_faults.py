"""A killed or interrupted training run loses nothing: rerunning the same command continues it,
SIGINT / SIGTERM checkpoint and exit in one line, --restart starts over on purpose, stale
temporaries go, and a checkpoint of another network is a one-line error."""
import os
import subprocess
import sys

import pytest
import torch

import train_seam
from voc12.toy import generate_toy_voc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLIM = ["--width", "0.0625", "--crop_size", "64", "--resize_long", "64", "96", "--batch_size", "4",
        "--num_workers", "0", "--log_interval", "1", "--max_step", "6", "--ckpt_interval", "3"]

# Runs train_seam.main as the command line does, signalling itself inside the loss of a chosen step
# (a test hook, not timing): the step finishes, then the handler's flag is read.
WRAPPER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import train_seam
at, sig = int(os.environ["SIGNAL_AT_CALL"]), getattr(signal, os.environ["SIGNAL_NAME"])
real, calls = train_seam.seam_losses, []
def counted(*a, **k):
    calls.append(1)
    if len(calls) == at:  # Ctrl-C signals the whole process group (loader workers too); kill, the process
        os.killpg(0, sig) if sig == signal.SIGINT else os.kill(os.getpid(), sig)
    return real(*a, **k)
train_seam.seam_losses = counted
train_seam.main(sys.argv[1:])
"""

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    generate_toy_voc(str(root), n_train_aug=16, n_train=4, n_val=2, size=64, seed=0)
    (root / "signal_at.py").write_text(WRAPPER.format(root=ROOT))
    return root


def seam_args(toy, out, *extra):
    return ["--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"), "--cls_labels",
            str(toy / "cls_labels.txt"), "--session_name", str(out / "seam"), "--tblog_dir", str(out / "tb"),
            *SLIM, *extra]


def final(out):
    return torch.load(out / "seam.pth", weights_only=True)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight(toy, tmp_path_factory):
    """The uninterrupted run every interrupted one must end at, bit for bit."""
    out = tmp_path_factory.mktemp("straight")
    train_seam.main(seam_args(toy, out))
    return final(out)


def crash_at_step_4(monkeypatch):
    real, calls = train_seam.seam_losses, []

    def crash(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed for the test")
        return real(*a, **k)

    monkeypatch.setattr(train_seam, "seam_losses", crash)
    return real


def test_the_same_command_again_continues_a_killed_run(toy, tmp_path, monkeypatch, capsys, straight):
    real = crash_at_step_4(monkeypatch)
    with pytest.raises(RuntimeError):
        train_seam.main(seam_args(toy, tmp_path))
    monkeypatch.setattr(train_seam, "seam_losses", real)
    stale = tmp_path / ".seam.resume.abcd1234.tmp.pt"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".seam2.resume.abcd1234.tmp.pt"  # another session's: not ours to remove
    other.write_bytes(b"x")
    capsys.readouterr()
    train_seam.main(seam_args(toy, tmp_path))  # no --resume
    out = capsys.readouterr().out
    assert f"found {tmp_path / 'seam.resume.pt'}: continuing from it (--restart starts over)" in out
    assert "resumed from" in out and "at step 3" in out
    assert not stale.exists() and other.exists()
    assert_same(final(tmp_path), straight)


def test_restart_starts_over(toy, tmp_path, monkeypatch, capsys, straight):
    real = crash_at_step_4(monkeypatch)
    with pytest.raises(RuntimeError):
        train_seam.main(seam_args(toy, tmp_path))
    monkeypatch.setattr(train_seam, "seam_losses", real)
    capsys.readouterr()
    train_seam.main(seam_args(toy, tmp_path, "--restart"))
    out = capsys.readouterr().out
    assert "resumed from" not in out and "found" not in out
    assert_same(final(tmp_path), straight)  # from step 0, deterministic
    with pytest.raises(SystemExit, match="^error: --resume and --restart contradict each other$"):
        train_seam.main(seam_args(toy, tmp_path, "--restart", "--resume", str(tmp_path / "seam.resume.pt")))


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_writes_a_resume_checkpoint_and_exits_in_one_line(toy, tmp_path, straight, name):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "SIGNAL_AT_CALL": "5",
           "SIGNAL_NAME": name, "PYTHONPATH": ROOT}
    # two loader workers: Ctrl-C reaches them too, and they must not take the run down first
    argv = seam_args(toy, tmp_path, "--num_workers", "2")
    done = subprocess.run([sys.executable, str(toy / "signal_at.py"), *argv], env=env, capture_output=True,
                          text=True, timeout=300, start_new_session=True)  # its own process group
    want = (f"interrupted by {name} at step 5: wrote {tmp_path / 'seam.resume.pt'}; "
            "run the same command to continue")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == want, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "seam.pth").exists()
    assert torch.load(tmp_path / "seam.resume.pt", weights_only=True)["step"] == 5
    assert not list(tmp_path.glob(".seam*.tmp.*"))
    train_seam.main(argv)  # the same command
    assert_same(final(tmp_path), straight)


def test_resuming_from_another_networks_checkpoint_is_one_line(toy, tmp_path):
    wide = tmp_path / "wide"
    train_seam.main(seam_args(toy, wide, "--width", "0.125", "--max_step", "1"))  # other shapes
    with pytest.raises(SystemExit) as e:
        train_seam.main(seam_args(toy, tmp_path, "--resume", str(wide / "seam.resume.pt")))
    msg = str(e.value)
    assert msg.startswith(f"error: {wide / 'seam.resume.pt'}: not a checkpoint of this network (size mismatch")
    assert "\n" not in msg
