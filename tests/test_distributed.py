"""torchrun DDP on the CPU (gloo): 2 processes give the update of 1 process with the same global
batch, and a 2-process run resumes exactly. Every run has one thread; the one-process references
run in the test process."""
import importlib
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

import evaluation
import infer_seam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs a stage's main() as torchrun would, optionally stopping every rank at the same loss call
# (a crash mid-run); the checkpoint written before it must survive. Command lines joined by THEN
# run one after the other in the same processes (and process group): seconds less per session
# than starting the ranks again.
WRAPPER = """
import os, sys
sys.path.insert(0, {root!r})
import importlib
stage = importlib.import_module(sys.argv[1])
crash_at = int(os.environ.get("CRASH_AT_CALL", "0"))
loss_name = {{"train_seam": "seam_losses", "train_seg": "segmentation_loss"}}[sys.argv[1]]
real, calls = getattr(stage, loss_name), []
def counted(*a, **k):
    calls.append(1)
    if len(calls) == crash_at:
        raise SystemExit("crash for the test")
    return real(*a, **k)
setattr(stage, loss_name, counted)
argv = sys.argv[2:]
while argv:
    n = argv.index("{then}") if "{then}" in argv else len(argv)
    stage.main(argv[:n])
    argv = argv[n + 1:]
"""
THEN = "--then--"


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory):
    path = tmp_path_factory.mktemp("wrapper") / "run_stage.py"
    path.write_text(WRAPPER.format(root=ROOT, then=THEN))
    return path


def launch(wrapper, stage, nproc, argv, crash_at=0):
    """The stage under torchrun, as users run it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "CRASH_AT_CALL": str(crash_at),
           "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(wrapper), stage, *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def spawn(wrapper, stage, nproc, argv, crash_at=0):
    """The ranks torchrun would start, started directly with its environment (no launcher process:
    seconds less per run); returns what `launch` does, the ranks' output joined."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(nproc):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "CRASH_AT_CALL": str(crash_at),
               "PYTHONPATH": ROOT, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc)}
        procs.append(subprocess.Popen([sys.executable, str(wrapper), stage, *argv], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    code = max((p.returncode for p in procs), key=abs)
    return subprocess.CompletedProcess(procs[0].args, code, "".join(o for o, _ in outs), "".join(e for _, e in outs))


def run_here(stage, argv):
    """The one-process reference, in this process (one thread, as the torchrun ranks)."""
    importlib.import_module(stage).main(argv)


def seam_argv(toy, session, *extra, dropout=False):
    return ["--weights", "none", "--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"), "--cls_labels",
            str(toy / "cls_labels.txt"), "--session_name", str(session), "--tblog_dir", str(session.parent / "tb"),
            "--batch_size", "4", "--num_workers", "0", "--device", "cpu", "--width", "0.0625", "--crop_size", "64",
            "--resize_long", "64", "96", "--max_step", "6", "--ckpt_interval", "3", "--log_interval", "1",
            *([] if dropout else ["--no_dropout"]), *extra]


def seg_argv(toy, session, *extra):
    return ["--weights", "none", "--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"),
            "--session_name", str(session),
            "--tblog_dir", str(session.parent / "tb"), "--batch_size", "4", "--num_workers", "0", "--device", "cpu",
            "--width", "0.0625", "--crop_size", "64", "--no_dropout", "--max_step", "4", "--log_interval", "1",
            "--lr", "0.01", *extra]


def weights(path):
    return torch.load(path, weights_only=True)


def assert_close_states(a, b, exact=False):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        elif a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


def check(result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_processes_train_stage1_as_one_and_resume_exactly(toy, wrapper, tmp_path):
    one, two, crashed = tmp_path / "one" / "seam", tmp_path / "two" / "seam", tmp_path / "crashed" / "seam"
    straight, plain = tmp_path / "straight" / "seam", tmp_path / "plain" / "seam"
    run_here("train_seam", seam_argv(toy, one))
    # three sessions in the same two processes (torchrun's launcher: the tests below): without
    # dropout, as one process; the plain-CAM ablation, which leaves the PCM heads unused (DDP must
    # not wait for their gradients); with dropout, the uninterrupted run of the resume check
    # the 2-process run validates at its last step: each rank scores its shard of the 4 val images
    result = spawn(wrapper, "train_seam", 2, [*seam_argv(toy, two, "--val_list", str(toy / "val.txt"),
                                                         "--val_interval", "6"), THEN,
                                              *seam_argv(toy, plain, "--no_pcm", "--no_er", "--no_ecr", "--max_step",
                                                         "2"), THEN,
                                              *seam_argv(toy, straight, dropout=True)])
    check(result)
    assert "2 processes" in result.stdout and plain.with_suffix(".pth").exists()
    # each rank took 2 of the 4 images of every batch; DDP averaged the gradients
    assert_close_states(weights(one.with_suffix(".pth")), weights(two.with_suffix(".pth")))
    # the summed confusions score what one process scores offline with the final weights
    last = json.loads(two.with_suffix(".val.json").read_text())[-1]["cam_rv"]
    infer_seam.main(["--weights", str(two.with_suffix(".pth")), "--voc12_root", str(toy), "--infer_list",
                     str(toy / "val.txt"), "--cls_labels", str(toy / "cls_labels.txt"), "--num_workers", "0",
                     "--crf_workers", "0", "--scales", "1.0", "--out_cam", str(tmp_path / "cams")])
    offline = evaluation.main(["--list", str(toy / "val.txt"), "--predict_dir", str(tmp_path / "cams"),
                               "--gt_dir", str(toy / "SegmentationClass"), "--type", "npz", "--t", str(last["t"]),
                               "--logfile", "", "--num_workers", "1"])
    assert offline["miou"] == last["miou"]

    # With dropout (each rank its own masks): both ranks stop in step 4 (the 4th loss call),
    # mid-epoch; rank 0 wrote the step-3 checkpoint with every rank's RNG state; the resumed run
    # ends exactly where the uninterrupted one does.
    assert spawn(wrapper, "train_seam", 2, seam_argv(toy, crashed, dropout=True), crash_at=4).returncode != 0
    assert not crashed.with_suffix(".pth").exists()
    resume = torch.load(str(crashed) + ".resume.pt", weights_only=True)
    assert resume["step"] == 3 and len(resume["rng_ranks"]) == 2
    assert not torch.equal(resume["rng_ranks"][0]["torch"], resume["rng_ranks"][1]["torch"])
    check(spawn(wrapper, "train_seam", 2, seam_argv(toy, crashed, "--resume", str(crashed) + ".resume.pt",
                                                 dropout=True)))
    assert_close_states(weights(straight.with_suffix(".pth")), weights(crashed.with_suffix(".pth")), exact=True)


def test_two_processes_train_stage5_bn_groups_as_the_published_two_gpus(toy, wrapper, tmp_path):
    # one process: BN statistics over two halves of each batch of 4 (--bn_groups 2, the default);
    # two processes: each rank's 2 images are one group, and the loss divides by the global count
    one, two = tmp_path / "one" / "seg", tmp_path / "two" / "seg"
    run_here("train_seg", seg_argv(toy, one))
    check(launch(wrapper, "train_seg", 2, seg_argv(toy, two)))
    a, b = weights(one.with_suffix(".pth")), weights(two.with_suffix(".pth"))
    assert_close_states(a, b)
    # running statistics moved (momentum 3e-4 from rank 0's group, as DataParallel kept the first replica's)
    assert any("running_mean" in k and a[k].abs().sum() > 0 for k in a)


def test_inference_under_torchrun_shards_the_list_and_writes_what_one_process_writes(toy, tmp_path):
    from network import resnet38_seg
    from tool.engine.checkpoint import save_state_dict

    torch.manual_seed(0)
    save_state_dict(resnet38_seg.Net(width=0.0625).state_dict(), tmp_path / "seg.pth")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ROOT}
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f"seg{nproc}"
        argv = [os.path.join(ROOT, "infer_seg.py"), "--weights", str(tmp_path / "seg.pth"), "--voc12_root", str(toy),
                "--infer_list", str(toy / "train_aug.txt"), "--out_seg", str(out), "--no_crf", "--num_workers", "0",
                "--device", "cpu", "--scales", "1.0"]
        if nproc == 1:  # the one-process reference, in this process
            run_here("infer_seg", argv[1:])
        else:
            launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
            result = subprocess.run([sys.executable, *launcher, *argv], env=env, capture_output=True, text=True,
                                    timeout=300)
            check(result)
            # each rank took its half of the 16 images
            assert result.stdout.count("8 of 16 images to process") == 2, result.stdout
        outs[nproc] = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(outs[1]) == 16 and outs[1] == outs[2]
