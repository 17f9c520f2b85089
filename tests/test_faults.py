"""Faults cost no work: a killed or interrupted training run continues when the same command
runs again, SIGINT / SIGTERM checkpoint and exit in one line, --restart starts over on purpose,
stale temporaries go; a bad listed image stops a run before anything is written, naming the file
(or --skip_bad_images leaves it out). (The in-process interruptions of each training stage:
tests/test_resume.py; wrong or damaged checkpoints: tests/test_bad_checkpoints.py.)"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import infer_seg
import train_seam
from tests.conftest import stage_argv
from voc12.data import image_problem, load_image

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
def signal_at(tmp_path_factory):
    path = tmp_path_factory.mktemp("wrapper") / "signal_at.py"
    path.write_text(WRAPPER.format(root=ROOT))
    return path


def seam_args(toy, out, *extra):
    """Stage 1 on the shared toy set with the suite's slim settings (tests/conftest.py)."""
    return stage_argv("train_seam", toy, out, *extra)


def final(out):
    return torch.load(out / "seam.pth", weights_only=True)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def straight(straight):
    """The uninterrupted stage-1 run every interrupted one must end at, bit for bit."""
    return straight("train_seam")


def crash_at_step_4(monkeypatch):
    real, calls = train_seam.seam_losses, []

    def crash(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed for the test")
        return real(*a, **k)

    monkeypatch.setattr(train_seam, "seam_losses", crash)
    return real


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


def test_ctrl_c_writes_a_resume_checkpoint_and_exits_in_one_line(toy, tmp_path, straight, signal_at):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "SIGNAL_AT_CALL": "5",
           "SIGNAL_NAME": "SIGINT", "PYTHONPATH": ROOT}
    # two loader workers: Ctrl-C reaches them too, and they must not take the run down first
    argv = seam_args(toy, tmp_path, "--num_workers", "2")
    done = subprocess.run([sys.executable, str(signal_at), *argv], env=env, capture_output=True,
                          text=True, timeout=300, start_new_session=True)  # its own process group
    want = (f"interrupted by SIGINT at step 5: wrote {tmp_path / 'seam.resume.pt'}; "
            "run the same command to continue")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == want, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "seam.pth").exists()
    assert torch.load(tmp_path / "seam.resume.pt", weights_only=True)["step"] == 5
    assert not list(tmp_path.glob(".seam*.tmp.*"))
    train_seam.main(argv)  # the same command
    assert_same(final(tmp_path), straight)


# ---------------------------------------------------------------- bad images


def first_ids(root, n):
    return (root / "train_aug.txt").read_text().split()[:n]


def damage(root, img_id, how):
    path = root / "JPEGImages" / f"{img_id}.jpg"
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not an image":
        path.write_text("<html>404</html>")
    elif how == "truncated":  # header intact, image data cut
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("how, reason", [("missing", "image not found"), ("empty", "empty file"),
                                         ("not an image", "not a readable image")])
def test_a_bad_listed_image_stops_training_before_anything_is_written(own_toy, tmp_path, how, reason):
    bad = damage(own_toy, first_ids(own_toy, 16)[-1], how)  # the last one: the whole list is checked first
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        train_seam.main(seam_args(own_toy, out))
    msg = str(e.value)
    assert msg.startswith(f"error: {bad}: {reason}") and "\n" not in msg
    assert msg.endswith("(1 of 16 listed images unusable; --skip_bad_images leaves them out)")
    assert not out.exists()  # no log, no tensorboard folder, no checkpoint


def test_skip_bad_images_trains_without_them_and_says_which(own_toy, tmp_path):
    ids = first_ids(own_toy, 16)
    missing, empty = damage(own_toy, ids[3], "missing"), damage(own_toy, ids[7], "empty")
    out = tmp_path / "out"
    train_seam.main(seam_args(own_toy, out, "--skip_bad_images", "--max_step", "3"))
    log = (out / "tb" / f"{str(out / 'seam').replace('/', '_')}.log").read_text()
    assert f"skipped {missing}: image not found" in log and f"skipped {empty}: empty file" in log
    assert "14 images, 3 steps" in log and (out / "seam.pth").exists()


def test_a_truncated_image_is_one_line_naming_it_when_it_is_decoded(own_toy, tmp_path):
    bad = damage(own_toy, first_ids(own_toy, 16)[0], "truncated")
    with pytest.raises(SystemExit) as e:
        train_seam.main(seam_args(own_toy, tmp_path / "out"))
    msg = str(e.value)
    assert msg.startswith(f"error: {bad}: cannot decode the image") and "\n" not in msg


def test_inference_checks_its_list_and_can_skip(own_toy, tmp_path, capsys):
    from network import resnet38_seg
    from tool.engine.checkpoint import save_state_dict

    torch.manual_seed(0)
    save_state_dict(resnet38_seg.Net(width=0.0625).state_dict(), tmp_path / "seg.pth")
    ids = first_ids(own_toy, 4)
    (tmp_path / "four.txt").write_text("\n".join(ids) + "\n")
    bad = damage(own_toy, ids[2], "not an image")
    argv = ["--weights", str(tmp_path / "seg.pth"), "--voc12_root", str(own_toy), "--infer_list",
            str(tmp_path / "four.txt"), "--out_seg", str(tmp_path / "seg"), "--no_crf", "--num_workers", "0",
            "--scales", "1.0"]
    with pytest.raises(SystemExit, match=f"^error: {bad}: not a readable image"):
        infer_seg.main(argv)
    assert not (tmp_path / "seg").exists()
    infer_seg.main([*argv, "--skip_bad_images"])
    assert f"skipped {bad}: not a readable image" in capsys.readouterr().out
    assert sorted(p.stem for p in (tmp_path / "seg").glob("*.png")) == sorted(ids[:2] + ids[3:])


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA as PNG bytes", "EXIF-rotated"])
def test_image_modes_load_as_rgb_like_the_published_code(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    path = tmp_path / "x.jpg"
    if mode == "L":
        rgb.convert("L").save(path, format="JPEG")
    elif mode == "CMYK":
        rgb.convert("CMYK").save(path, format="JPEG")
    elif mode == "RGBA as PNG bytes":
        rgb.convert("RGBA").save(path, format="PNG")
    else:
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90" orientation: ignored, as PIL's plain open ignores it
        rgb.save(path, format="JPEG", exif=exif)
    assert image_problem(str(path)) is None
    img = load_image(str(path))
    assert img.mode == "RGB" and img.size == (30, 20)


# ---------------------------------------------------------------- no orphans

# A parent that starts a CRF pool (2 processes), a helper pool (evaluation's, forked) and two
# loader workers, gives each a job that sleeps a minute, then kills itself with SIGKILL.
KILL_WRAPPER = """
import functools, os, signal, sys, time
sys.path.insert(0, {root!r})
import torch
from torch.utils.data import DataLoader
from tool.engine.inference import OutputPool, HelperPool
from tool.engine.runtime import die_with_parent

def nap(marker):  # a minute-long job that says when it has started
    open(marker, "w").close()
    time.sleep(60)

class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        nap(os.path.join({marks!r}, f"loader{{i}}"))

if __name__ == "__main__":
    crf = OutputPool(2)
    for k in range(2):
        crf.submit(nap, os.path.join({marks!r}, f"crf{{k}}"))
    pool = HelperPool(1, "fork")
    pool.submit(nap, os.path.join({marks!r}, "pool"))
    loader = iter(DataLoader(Slow(), num_workers=2, worker_init_fn=functools.partial(die_with_parent, os.getpid())))
    while len(os.listdir({marks!r})) < 5:  # every helper asleep in its job
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def processes_in_group(pgid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_helper_processes_end_when_their_parent_is_killed(tmp_path):
    (tmp_path / "marks").mkdir()
    (tmp_path / "kill_self.py").write_text(KILL_WRAPPER.format(root=ROOT, marks=str(tmp_path / "marks")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "kill_self.py")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # its own process group
    assert proc.wait(timeout=120) == -signal.SIGKILL
    # Left alone, each helper would sleep out its minute; with die_with_parent they end at once
    # (15 s allows for a loaded machine, far below the minute).
    deadline = time.monotonic() + 15
    while processes_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_in_group(proc.pid)
    for pid in left:  # do not leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} helper processes outlived their parent"


def test_defaults_write_under_the_runs_folder_not_the_current_one(own_toy, tmp_path, monkeypatch):
    toy = own_toy  # evaluation's log goes beside the predictions: into the data set here
    import evaluation

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run = tmp_path / "run"
    argv = [a for a in seam_args(toy, run, "--max_step", "1") if a != str(run / "tb")]
    argv.remove("--tblog_dir")
    train_seam.main(argv)
    assert (run / "tblog" / f"{str(run / 'seam').replace('/', '_')}.log").is_file()
    gt = toy / "SegmentationClass"
    evaluation.main(["--list", str(toy / "train.txt"), "--predict_dir", str(gt), "--gt_dir", str(gt),
                     "--num_workers", "1"])
    assert (toy / "evallog.txt").is_file()  # beside the predictions' folder
    assert list(cwd.iterdir()) == []


# ---------------------------------------------------------------- outputs that cannot be written


def test_an_unwritable_session_folder_stops_training_before_the_work(toy, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    argv = seam_args(toy, blocker / "run")  # the session and its log would go under a file
    with pytest.raises(SystemExit) as e:
        train_seam.main(argv)
    assert str(e.value) == f"error: {blocker / 'run'}: cannot write: {blocker} is a file, not a folder"


def test_inference_checks_its_output_folder_first(toy, tmp_path):
    from network import resnet38_seg
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_seg.Net(width=0.0625).state_dict(), tmp_path / "seg.pth")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SystemExit, match=f"^error: {tmp_path / 'a_file' / 'seg'}: cannot write: .* is a file"):
        infer_seg.main(["--weights", str(tmp_path / "seg.pth"), "--voc12_root", str(toy), "--infer_list",
                        str(toy / "train.txt"), "--out_seg", str(tmp_path / "a_file" / "seg"), "--no_crf"])


@pytest.mark.parametrize("how", ["OSError ENOSPC", "torch's RuntimeError on a full disk"])
def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays_whole(toy, tmp_path, monkeypatch, how):
    import errno
    import shutil

    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the step-4 checkpoint (epoch end): the disk is full by now
            real_save(obj, f, *a, **k)  # part of it reached the disk
            if how.startswith("OSError"):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1024 vs 512")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as e:
        train_seam.main(seam_args(toy, tmp_path))
    resume = tmp_path / "seam.resume.pt"
    assert str(e.value) == f"error: {resume}: cannot write: No space left on device (ENOSPC)"
    assert torch.load(resume, weights_only=True)["step"] == 3  # the step-3 checkpoint, whole
    assert not list(tmp_path.glob(".seam*.tmp.*")) and not (tmp_path / "seam.pth").exists()


@pytest.mark.parametrize("entry", ["../x", "/JPEGImages/../../etc/passwd.jpg", "a\\\\..\\\\b"])
def test_a_list_entry_cannot_leave_the_dataset_folder(toy, tmp_path, entry):
    ids = first_ids(toy, 3)
    (tmp_path / "list.txt").write_text(f"{ids[0]}\n{entry}\n{ids[1]}\n")
    argv = seam_args(toy, tmp_path / "out")
    argv[argv.index("--train_list") + 1] = str(tmp_path / "list.txt")
    with pytest.raises(SystemExit) as e:
        train_seam.main(argv)
    assert str(e.value) == f"error: {tmp_path / 'list.txt'} line 2: {entry!r} points outside the dataset folder"
    assert not (tmp_path / "out").exists()


# Loaded by every Python of the stage script (PYTHONPATH): SIGKILL in the loss of a chosen step.
KILL_HOOK = """
import os, signal
import tool.losses
real, calls = tool.losses.seam_losses, []
def counted(*a, **k):
    calls.append(1)
    if len(calls) == int(os.environ["KILL_AT_CALL"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
tool.losses.seam_losses = counted
"""


def test_kill_9_then_the_same_stage_script_ends_where_an_uninterrupted_run_does(toy, tmp_path, straight):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    work = tmp_path / "work"
    flags = list(SLIM)  # the shell script adds --session_name and --tblog_dir
    env = {**os.environ, "SEAM_PYTHON": sys.executable, "WORK_DIR": str(work), "VOC12_ROOT": str(toy),
           "CLS_LABELS": str(toy / "cls_labels.txt"), "TRAIN_LIST": str(toy / "train_aug.txt"),
           "SEAM_SESSION": "seam", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "IMAGENET_PARAMS": "none"}
    script = os.path.join(ROOT, "scripts", "train_seam.sh")
    killed = subprocess.run(["bash", script, *flags], env={**env, "PYTHONPATH": f"{hook}:{ROOT}", "KILL_AT_CALL": "6"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0 and not (work / "seam.pth").exists()
    assert torch.load(work / "seam.resume.pt", weights_only=True)["step"] == 4  # the epoch-end checkpoint
    again = subprocess.run(["bash", script, *flags], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same(final(work), straight)


def test_a_nan_from_the_last_checkpoints_weights_brings_the_one_before_back(toy, tmp_path, monkeypatch, straight):
    """Checkpoints at steps 2 and 4; the loss of step 4 (computed from the step-4 weights) is NaN:
    resuming from those weights would fail at once, so the step-2 checkpoint is the resume point."""
    real, calls = train_seam.seam_losses, []

    def nan_in_step_4(*a, **k):
        calls.append(1)
        terms = real(*a, **k)
        if len(calls) == 5:  # 0-based step 4
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(train_seam, "seam_losses", nan_in_step_4)
    with pytest.raises(SystemExit) as e:
        train_seam.main(seam_args(toy, tmp_path, "--ckpt_interval", "2"))
    resume = tmp_path / "seam.resume.pt"
    assert str(e.value) == (f"error: non-finite loss at step 4, computed from the step-4 checkpoint's weights; "
                            f"{resume} is the checkpoint before it again")
    assert torch.load(resume, weights_only=True)["step"] == 2
    assert not (tmp_path / "seam.resume.prev.pt").exists() and not (tmp_path / "seam.pth").exists()
    monkeypatch.setattr(train_seam, "seam_losses", real)
    train_seam.main(seam_args(toy, tmp_path, "--ckpt_interval", "2"))  # the same command: from step 2
    assert not (tmp_path / "seam.resume.prev.pt").exists()  # a finished run keeps one resume file
    assert_same(final(tmp_path), straight)


# ---------------------------------------------------------------- inputs that were already clean


def one_line_exit(fn, argv):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    msg = str(e.value)
    assert msg.startswith("error: ") and "\n" not in msg, msg
    return msg


def test_inputs_that_stop_in_one_line(toy, tmp_path):
    good = seam_args(toy, tmp_path / "out")
    root_at = good.index("--voc12_root") + 1
    list_at = good.index("--train_list") + 1

    def with_(index, value):
        argv = list(good)
        argv[index] = str(value)
        return argv

    assert "no JPEGImages folder" in one_line_exit(train_seam.main, with_(root_at, tmp_path / "nowhere"))
    (tmp_path / "empty.txt").write_text("\n")
    assert "the image list is empty" in one_line_exit(train_seam.main, with_(list_at, tmp_path / "empty.txt"))
    (tmp_path / "unlabelled.txt").write_text("2099_000001\n")
    assert "no labels for 1 ids" in one_line_exit(train_seam.main, with_(list_at, tmp_path / "unlabelled.txt"))
    assert not (tmp_path / "out").exists()  # nothing written by any of them
    # CRLF lists read as LF ones
    ids = first_ids(toy, 4)
    (tmp_path / "crlf.txt").write_bytes("".join(f"{i}\r\n" for i in ids).encode())
    train_seam.main(with_(list_at, tmp_path / "crlf.txt") + ["--max_step", "1"])
    assert (tmp_path / "out" / "seam.pth").exists()


def test_debug_shows_the_error_behind_the_line(own_toy, tmp_path):
    bad = damage(own_toy, first_ids(own_toy, 16)[0], "truncated")
    with pytest.raises(ValueError, match=f"^{bad}: cannot decode the image"):  # the exception itself
        train_seam.main(seam_args(own_toy, tmp_path / "out", "--debug"))


def test_inference_removes_the_temporaries_a_killed_run_left(own_toy, tmp_path):
    from network import resnet38_seg
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_seg.Net(width=0.0625).state_dict(), tmp_path / "seg.pth")
    out = tmp_path / "seg"
    out.mkdir()
    old, fresh = out / ".2007_000001.abcd1234.tmp.png", out / ".2007_000002.abcd1234.tmp.png"
    for f in (old, fresh):
        f.write_bytes(b"half a png")
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # a killed run's; `fresh` may be another rank's
    (tmp_path / "one.txt").write_text(first_ids(own_toy, 1)[0] + "\n")
    infer_seg.main(["--weights", str(tmp_path / "seg.pth"), "--voc12_root", str(own_toy), "--infer_list",
                    str(tmp_path / "one.txt"), "--out_seg", str(out), "--no_crf", "--num_workers", "0",
                    "--scales", "1.0"])
    assert not old.exists() and fresh.exists()


def test_a_dataparallel_checkpoint_loads_and_bad_predictions_are_one_line(own_toy, tmp_path, capsys):
    import evaluation
    from network import resnet38_seg

    torch.manual_seed(0)
    state = resnet38_seg.Net(width=0.0625).state_dict()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "dp.pth")  # saved from DataParallel
    ids = first_ids(own_toy, 2)
    (tmp_path / "two.txt").write_text("\n".join(ids) + "\n")
    infer_seg.main(["--weights", str(tmp_path / "dp.pth"), "--voc12_root", str(own_toy), "--infer_list",
                    str(tmp_path / "two.txt"), "--out_seg", str(tmp_path / "seg"), "--no_crf", "--num_workers", "0",
                    "--scales", "1.0"])
    assert len(list((tmp_path / "seg").glob("*.png"))) == 2
    capsys.readouterr()  # inference's progress bar
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "seg" / f"{ids[1]}.png")  # the wrong size
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--list", str(tmp_path / "two.txt"), "--predict_dir", str(tmp_path / "seg"), "--gt_dir",
                         str(own_toy / "SegmentationClassAug"), "--logfile", "", "--num_workers", "1"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1  # evaluation.py: one line on stderr, status 2
    assert err.startswith(f"error: {tmp_path / 'seg' / ids[1]}.png")


@pytest.mark.parametrize("cam", ["another size", "a class id outside 0..19"])
def test_a_bad_cam_file_is_one_line_naming_it(own_toy, tmp_path, cam):
    import infer_aff
    from network import resnet38_aff
    from tool.engine.checkpoint import save_state_dict
    from tool.engine.files import save_npz

    save_state_dict(resnet38_aff.Net(width=0.0625).state_dict(), tmp_path / "aff.pth")
    name = first_ids(own_toy, 1)[0]
    (tmp_path / "one.txt").write_text(name + "\n")
    keys, maps = (np.array([3]), np.zeros((1, 32, 32), np.float32)) if cam == "another size" else \
        (np.array([20]), np.zeros((1, 64, 64), np.float32))
    save_npz(str(tmp_path / "cam" / f"{name}.npz"), keys=keys, cams=maps)
    msg = one_line_exit(infer_aff.main, ["--weights", str(tmp_path / "aff.pth"), "--voc12_root", str(own_toy),
                                         "--infer_list", str(tmp_path / "one.txt"), "--cam_dir", str(tmp_path / "cam"),
                                         "--out_rw", str(tmp_path / "rw"), "--num_workers", "0"])
    assert msg.startswith(f"error: {tmp_path / 'cam' / name}.npz: ")
    assert not (tmp_path / "rw").exists() or not any((tmp_path / "rw").iterdir())  # no label written


# ---------------------------------------------------------------- guard rails


def written(folder):
    """Every file under `folder` (none when it does not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("script", ["train_seam", "train_aff", "train_seg"])
def test_training_needs_weights_said_in_one_line(toy, tmp_path, capsys, script):
    import train_aff
    import train_seg

    main = {"train_seam": train_seam.main, "train_aff": train_aff.main, "train_seg": train_seg.main}[script]
    argv = ["--voc12_root", str(toy), "--session_name", str(tmp_path / "out" / "s"), "--la_crf_dir", "a",
            "--ha_crf_dir", "b"][: 4 if script != "train_aff" else 8]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--weights" in err and err.startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_weights_none_is_random_initialisation_said_once(toy, tmp_path):
    train_seam.main(seam_args(toy, tmp_path, "--max_step", "1"))
    log = (tmp_path / "tb" / f"{str(tmp_path / 'seam').replace('/', '_')}.log").read_text()
    assert log.count("random initialisation (--weights none)") == 1 and "warning" not in log


def test_stage_scripts_stop_without_imagenet_params(toy, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "IMAGENET_PARAMS"}
    env.update(SEAM_PYTHON=sys.executable, WORK_DIR=str(tmp_path / "work"), VOC12_ROOT=str(toy),
               TRAIN_LIST=str(toy / "train_aug.txt"))
    for script in ("train_seam.sh", "train_aff.sh", "train_seg.sh"):
        done = subprocess.run(["bash", os.path.join(ROOT, "scripts", script)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, script
        assert done.stderr.strip().splitlines() == [
            "error: set IMAGENET_PARAMS to the backbone's ImageNet weights (or none: random initialisation)"]
    assert written(tmp_path / "work") == []


def hold_the_lock(path):
    """A forked child that holds the session lock as a training run does (it says so through a
    pipe), then sleeps until it is killed: the pid of a second process, without starting Python."""
    from tool.engine.training import session_lock

    ready, said = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but the lock, then sleep
        try:
            with session_lock(str(path)):
                os.write(said, b"x")
                time.sleep(120)
        finally:
            os._exit(0)
    os.close(said)
    assert os.read(ready, 1) == b"x"
    os.close(ready)
    return pid


def lock_is_free(path):
    import fcntl

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_a_second_run_of_a_session_stops_naming_the_holder(toy, tmp_path, capsys):
    import socket

    lock = tmp_path / "seam.lock"
    holder = hold_the_lock(lock)
    try:
        with pytest.raises(SystemExit) as e:
            train_seam.main(seam_args(toy, tmp_path))
        assert str(e.value) == (f"error: {lock}: the session is being written by pid {holder} on "
                                f"{socket.gethostname()}; wait for that run to end")
        assert written(tmp_path) == ["seam.lock"]  # nothing of the run
    finally:
        os.kill(holder, signal.SIGKILL)  # kill -9: the kernel releases its lock
        os.waitpid(holder, 0)
    capsys.readouterr()
    assert lock.read_text() == f"pid {holder} on {socket.gethostname()}\n"  # left by the killed holder
    train_seam.main(seam_args(toy, tmp_path, "--max_step", "1"))  # its process is gone: taken, no message
    assert "seam.lock" not in capsys.readouterr().out
    assert not lock.exists() and (tmp_path / "seam.pth").exists()  # released (removed) at the end


def test_the_session_lock_is_held_while_training(toy, tmp_path, monkeypatch):
    from tool.engine.training import TrainingRun

    real, seen, made, real_init = train_seam.seam_losses, [], [], TrainingRun.__init__

    def looking(*a, **k):
        seen.append(((tmp_path / "seam.lock").read_text().split()[1], lock_is_free(tmp_path / "seam.lock")))
        return real(*a, **k)

    def init(self, *a, **k):
        real_init(self, *a, **k)
        made.append(written(tmp_path))

    monkeypatch.setattr(train_seam, "seam_losses", looking)
    monkeypatch.setattr(TrainingRun, "__init__", init)
    train_seam.main(seam_args(toy, tmp_path, "--max_step", "2"))
    assert made == [[]]  # made, a run has checked everything and holds nothing: the with block takes the lock
    assert seen == [(str(os.getpid()), False)] * 2 and not (tmp_path / "seam.lock").exists()


def cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def crf_maps(root, names, folder):
    from tool.engine.camfile import save_crf

    rng = np.random.default_rng(0)
    for alpha in ("la", "ha"):
        for name in names:
            scores = rng.random((2, 64, 64)).astype(np.float32)
            save_crf(str(folder / alpha / f"{name}.npz"), np.array([0, 5]), scores / scores.sum(0))


def test_a_damaged_crf_map_is_one_line_or_skipped(own_toy, tmp_path):
    import train_aff

    ids = first_ids(own_toy, 4)
    (tmp_path / "four.txt").write_text("\n".join(ids) + "\n")
    crf_maps(own_toy, ids, tmp_path)
    bad = cut(tmp_path / "ha" / f"{ids[1]}.npz")
    argv = ["--weights", "none", "--voc12_root", str(own_toy), "--train_list", str(tmp_path / "four.txt"),
            "--la_crf_dir", str(tmp_path / "la"), "--ha_crf_dir", str(tmp_path / "ha"), "--session_name",
            str(tmp_path / "out" / "aff"), "--width", "0.0625", "--crop_size", "64", "--batch_size", "2",
            "--num_workers", "0", "--max_step", "1"]
    msg = one_line_exit(train_aff.main, argv)
    assert msg.startswith(f"error: {bad}: damaged map file (BadZipFile") and "1 of 4 listed images unusable" in msg
    assert not (tmp_path / "out").exists()
    train_aff.main([*argv, "--skip_bad_images"])
    log = next((tmp_path / "out" / "tblog").glob("*.log")).read_text()
    assert f"skipped {bad}: damaged map file" in log and "3 images, 1 steps" in log
    from tool.engine.camfile import load_crf  # and where a file is read: the same one line

    with pytest.raises(ValueError, match=f"^{bad}: damaged map file"):
        load_crf(bad)


def test_a_damaged_cam_is_one_line_or_skipped_in_the_walk(own_toy, tmp_path, capsys):
    import infer_aff
    from network import resnet38_aff
    from tool.engine.camfile import save_cam
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_aff.Net(width=0.0625).state_dict(), tmp_path / "aff.pth")
    ids = first_ids(own_toy, 3)
    (tmp_path / "three.txt").write_text("\n".join(ids) + "\n")
    for name in ids:
        save_cam(str(tmp_path / "cam" / f"{name}.npz"), np.array([4]), np.full((1, 64, 64), 0.5, np.float32))
    bad = cut(tmp_path / "cam" / f"{ids[0]}.npz")
    argv = ["--weights", str(tmp_path / "aff.pth"), "--voc12_root", str(own_toy), "--infer_list",
            str(tmp_path / "three.txt"), "--cam_dir", str(tmp_path / "cam"), "--out_rw", str(tmp_path / "rw"),
            "--num_workers", "0"]
    assert one_line_exit(infer_aff.main, argv).startswith(f"error: {bad}: damaged map file")
    assert written(tmp_path / "rw") == []
    infer_aff.main([*argv, "--skip_bad_images"])
    assert f"skipped {bad}: damaged map file" in capsys.readouterr().out
    assert written(tmp_path / "rw") == sorted(f"{n}.png" for n in ids[1:])


def test_a_damaged_label_png_is_one_line_or_skipped(own_toy, tmp_path):
    import train_seg

    ids = first_ids(own_toy, 4)
    (tmp_path / "four.txt").write_text("\n".join(ids) + "\n")
    bad = cut(own_toy / "SegmentationClassAug" / f"{ids[2]}.png")
    argv = ["--weights", "none", "--voc12_root", str(own_toy), "--train_list", str(tmp_path / "four.txt"),
            "--session_name", str(tmp_path / "out" / "seg"), "--width", "0.0625", "--crop_size", "64",
            "--batch_size", "2", "--num_workers", "0", "--max_step", "1"]
    assert one_line_exit(train_seg.main, argv).startswith(f"error: {bad}: damaged label PNG")
    assert not (tmp_path / "out").exists()
    train_seg.main([*argv, "--skip_bad_images"])
    assert f"skipped {bad}: damaged label PNG" in next((tmp_path / "out" / "tblog").glob("*.log")).read_text()
    from tool.vis import load_label_png

    with pytest.raises(ValueError, match=f"^{bad}: damaged label PNG"):
        load_label_png(bad)


def test_a_damaged_prediction_png_is_one_line_in_evaluation(own_toy, tmp_path, capsys):
    import evaluation

    ids = first_ids(own_toy, 2)
    (tmp_path / "two.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "pred").mkdir()
    for name in ids:
        Image.open(own_toy / "SegmentationClassAug" / f"{name}.png").save(tmp_path / "pred" / f"{name}.png")
    bad = cut(tmp_path / "pred" / f"{ids[1]}.png")
    with pytest.raises(SystemExit) as e:
        evaluation.main(["--list", str(tmp_path / "two.txt"), "--predict_dir", str(tmp_path / "pred"), "--gt_dir",
                         str(own_toy / "SegmentationClassAug"), "--logfile", "", "--num_workers", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {bad}: ") and err.count("\n") == 1, err


NONSENSE = [
    ("train_seam", "--batch_size", "0"), ("train_seam", "--lr", "-0.1"), ("train_seam", "--crop_size", "0"),
    ("train_seam", "--max_epoches", "0"), ("train_seam", "--wt_dec", "-1"), ("train_seam", "--momentum", "nan"),
    ("train_seam", "--num_workers", "-1"), ("train_seam", "--scale_factor", "0"), ("train_seam", "--er_weight", "-1"),
    ("train_aff", "--radius", "0"), ("train_seg", "--bn_groups", "0"), ("train_seg", "--hsv_shift", "-1"),
    ("infer_seam", "--scales", "0"), ("infer_seam", "--crf_alphas", "inf"), ("infer_seam", "--crf_workers", "-2"),
    ("infer_aff", "--logt", "-1"), ("infer_aff", "--beta", "0"), ("infer_aff", "--alpha", "x"),
    ("infer_seg", "--crf_t", "0"), ("infer_seg", "--scales", "-1"),
    ("train_seam", "--max_step", "-" + "9" * 400),  # too large for a float: no OverflowError traceback
]
REQUIRED = {"train_seam": [], "train_aff": ["--la_crf_dir", "a", "--ha_crf_dir", "b"], "train_seg": [],
            "infer_seam": [], "infer_aff": ["--cam_dir", "c", "--out_rw", "o"], "infer_seg": ["--out_seg", "o"]}


@pytest.mark.parametrize("script, flag, value", NONSENSE)
def test_nonsense_numbers_stop_where_they_are_parsed(tmp_path, capsys, monkeypatch, script, flag, value):
    import importlib

    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(script).main
    with pytest.raises(SystemExit) as e:
        main(["--voc12_root", str(tmp_path / "nowhere"), "--weights", "w", *REQUIRED[script], flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: argument {flag}: "), err
    assert written(tmp_path) == []


def test_an_error_behind_a_progress_bar_stands_on_its_own_line(own_toy, tmp_path):
    from network import resnet38_seg
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_seg.Net(width=0.0625).state_dict(), tmp_path / "seg.pth")
    ids = first_ids(own_toy, 6)
    (tmp_path / "six.txt").write_text("\n".join(ids) + "\n")
    bad = damage(own_toy, ids[4], "truncated")  # its header passes the check; decoding fails mid-run
    done = subprocess.run([sys.executable, "infer_seg.py", "--weights", str(tmp_path / "seg.pth"), "--voc12_root",
                           str(own_toy), "--infer_list", str(tmp_path / "six.txt"), "--out_seg", str(tmp_path / "seg"),
                           "--no_crf", "--num_workers", "0", "--scales", "1.0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1
    lines = done.stderr.split("\n")
    assert lines[-1] == "" and lines[-2].startswith(f"error: {bad}: cannot decode the image"), done.stderr
    assert done.stderr.count("error: ") == 1 and "\rerror" not in done.stderr and "Traceback" not in done.stderr
    assert "infer_seg:" in done.stderr.split("error: ")[0]  # the bar was open, and is closed above the line


SIGNAL_HOOK = """
import os, signal
import tool.cam
real, calls = tool.cam.flip_scale_sum, []
def counted(*a, **k):
    calls.append(1)
    if len(calls) == int(os.environ["SIGNAL_AT_IMAGE"]):
        sig = getattr(signal, os.environ["SIGNAL_NAME"])
        os.killpg(0, sig) if sig == signal.SIGINT else os.kill(os.getpid(), sig)  # Ctrl-C: the process group
    return real(*a, **k)
tool.cam.flip_scale_sum = counted
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupted_inference_says_how_far_it_got_and_continues(toy, tmp_path, capsys, sig):
    from network import resnet38_seam
    from tool.engine.camfile import load_cam, load_crf
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_seam.Net(width=0.0625).state_dict(), tmp_path / "seam.pth")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGNAL_HOOK)
    (tmp_path / "eight.txt").write_text("\n".join(first_ids(toy, 8)) + "\n")
    # Ctrl-C: with a loader worker and a CRF process, which it reaches too (the pool must end
    # cleanly); SIGTERM, from a scheduler, reaches this process alone
    helpers = ["--num_workers", "1", "--crf_workers", "1"] if sig == "SIGINT" else \
        ["--num_workers", "0", "--crf_workers", "0"]
    argv = [sys.executable, os.path.join(ROOT, "infer_seam.py"), "--weights", str(tmp_path / "seam.pth"),
            "--voc12_root", str(toy), "--infer_list", str(tmp_path / "eight.txt"), "--cls_labels",
            str(toy / "cls_labels.txt"), "--out_cam", str(tmp_path / "cam"), "--out_crf", str(tmp_path / "crf"),
            "--scales", "1.0", *helpers]
    env = {**os.environ, "PYTHONPATH": f"{hook}:{ROOT}", "OMP_NUM_THREADS": "1", "SIGNAL_AT_IMAGE": "4",
           "SIGNAL_NAME": sig}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
    cams = written(tmp_path / "cam")
    assert 2 <= len(cams) < 8, done.stderr[-3000:]
    assert written(tmp_path / "crf_4.0") == written(tmp_path / "crf_24.0") == cams
    want = (f"interrupted by {sig}: {len(cams)} of 8 images written to {tmp_path / 'cam'}; "
            "run the same command to continue")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == want, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "resource_tracker" not in done.stderr and "leaked" not in done.stderr
    for name in cams:  # every file whole
        load_cam(str(tmp_path / "cam" / name))
        load_crf(str(tmp_path / "crf_24.0" / name))
    if sig == "SIGTERM":  # the same command continues where it stopped (here, in this process)
        import infer_seam

        capsys.readouterr()
        infer_seam.main(argv[2:])
        assert f"{8 - len(cams)} of 8 images to process" in capsys.readouterr().out
        assert len(written(tmp_path / "cam")) == 8


def test_stage_2_stops_before_the_work_when_the_disk_is_short(toy, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import infer_seam
    from network import resnet38_seam
    from tool.engine import files as fileio
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_seam.Net(width=0.0625).state_dict(), tmp_path / "seam.pth")
    argv = ["--weights", str(tmp_path / "seam.pth"), "--voc12_root", str(toy), "--infer_list", str(toy / "train.txt"),
            "--cls_labels", str(toy / "cls_labels.txt"), "--out_cam", str(tmp_path / "cam"), "--out_crf",
            str(tmp_path / "crf"), "--num_workers", "0", "--crf_workers", "0", "--scales", "1.0"]
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**5, 10**5))
    msg = one_line_exit(infer_seam.main, argv)
    # per image its classes x its size: the CAMs, and each CRF power with background, in float32
    from tool.engine.files import size_text
    from voc12.dataset import open_dataset

    ids = (toy / "train.txt").read_text().split()
    labels = open_dataset("voc12", str(toy)).labels(ids, str(toy / "cls_labels.txt"))
    need = 0
    for name in ids:
        w, h = Image.open(toy / "JPEGImages" / f"{name}.jpg").size
        k = int((labels[name] > 1e-5).sum())
        need += (k + 2 * (k + 1)) * h * w * 4
    assert msg == (f"error: {tmp_path / 'cam'}: infer_seam.py writes up to {size_text(need)} on this file system "
                   f"({tmp_path / 'cam'}, {tmp_path / 'crf_4.0'}, {tmp_path / 'crf_24.0'}), 100.0 kB are free "
                   "(--ignore_disk_check to go on)")
    assert need > 10**5
    assert written(tmp_path) == ["seam.pth"]
    monkeypatch.setattr(fileio.shutil, "disk_usage", shutil.disk_usage)
    infer_seam.main([*argv, "--ignore_disk_check"])
    assert len(written(tmp_path / "cam")) == len(ids)


def test_a_finished_session_is_not_trained_again_by_accident(toy, tmp_path):
    train_seam.main(seam_args(toy, tmp_path, "--max_step", "1"))
    before = (tmp_path / "seam.pth").read_bytes()
    msg = one_line_exit(train_seam.main, seam_args(toy, tmp_path, "--max_step", "1"))
    assert msg == (f"error: {tmp_path / 'seam.pth'}: this session is finished; --restart trains it again (or give "
                   "another --session_name)")
    assert (tmp_path / "seam.pth").read_bytes() == before
    train_seam.main(seam_args(toy, tmp_path, "--max_step", "1", "--restart"))  # on purpose

