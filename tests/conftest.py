import shutil

import pytest
import torch

# The suite pins itself to the CPU, where the exact references hold (CAMs at rtol 1e-4, bit-exact
# resume): on a GPU, TF32 convolutions and nondeterministic backward kernels would fail them.
# Tests that need CUDA take the `cuda` fixture, which gives the device back (or skips).
HAS_CUDA = torch.cuda.is_available()
torch.cuda.is_available = lambda: False


@pytest.fixture
def cuda(monkeypatch):
    """The CUDA device, for the GPU tests (skipped without one; run them with scripts/gpu_check.sh)."""
    if not HAS_CUDA:
        pytest.skip("needs a CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return torch.device("cuda")


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny nets: on a busy 2-core machine, OpenMP threads waiting on each other
    cost far more than they gain (a forward pass measured 1.6 s with 2 threads, 4 ms with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- the shared toy set and its stages
# Session-scoped: made once per test process (under xdist, once per worker). Tests read them and
# never write into them: a test that damages the data set takes `own_toy`, a copy.

TOY = dict(n_train_aug=16, n_train=6, n_val=4, size=64, seed=0)  # 4 steps per epoch at batch 4

# The slim settings every training stage runs with in the suite: 6 steps, a checkpoint at step 3,
# the epoch end (step 4) and the end.
SLIM = ["--weights", "none", "--width", "0.0625", "--crop_size", "64", "--batch_size", "4", "--num_workers", "0",
        "--log_interval", "1", "--max_step", "6", "--ckpt_interval", "3"]
STAGES = ("train_seam", "train_aff", "train_seg")
SESSION = {"train_seam": "seam", "train_aff": "aff", "train_seg": "seg"}
LOSS = {"train_seam": "seam_losses", "train_aff": "affinity_loss", "train_seg": "segmentation_loss"}  # script globals


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """The toy VOC set: 16 train_aug images (6 of them train, with masks), 4 val, 64 px. Read only."""
    from voc12.toy import generate_toy_voc

    root = tmp_path_factory.mktemp("toy")
    generate_toy_voc(str(root), **TOY)
    return root


@pytest.fixture
def own_toy(toy, tmp_path):
    """A copy of the toy set that the test may damage."""
    return shutil.copytree(toy, tmp_path / "voc")


def stage_argv(stage, toy, out, *extra, stage2=None):
    """The command line of training stage `stage` (train_seam / train_aff / train_seg) on the toy
    set, writing <out>/<seam|aff|seg>.pth and its log under <out>/tb; train_aff reads the CRF maps of
    `stage2` (the folder of the `stage2` fixture)."""
    argv = ["--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"), "--session_name",
            str(out / SESSION[stage]), "--tblog_dir", str(out / "tb"), *SLIM]
    if stage == "train_seam":
        argv += ["--cls_labels", str(toy / "cls_labels.txt"), "--resize_long", "64", "96"]
    elif stage == "train_aff":
        argv += ["--la_crf_dir", str(stage2 / "crf_4.0"), "--ha_crf_dir", str(stage2 / "crf_24.0")]
    return [*argv, *map(str, extra)]


def stage_main(stage):
    import importlib

    return importlib.import_module(stage).main


@pytest.fixture(scope="session")
def stage2(toy, tmp_path_factory):
    """A 2-step SEAM checkpoint (seam.pth) and its stage-2 outputs for train_aug: cam/, crf_4.0/,
    crf_24.0/ and pred/ (the CAM labels). Read only."""
    out = tmp_path_factory.mktemp("stage2")
    stage_main("train_seam")(stage_argv("train_seam", toy, out, "--max_step", "2"))
    stage_main("infer_seam")(["--weights", str(out / "seam.pth"), "--voc12_root", str(toy), "--infer_list",
                              str(toy / "train_aug.txt"), "--cls_labels", str(toy / "cls_labels.txt"), "--num_workers",
                              "0", "--crf_workers", "0", "--out_cam", str(out / "cam"), "--out_crf", str(out / "crf"),
                              "--out_cam_pred", str(out / "pred")])
    return out


@pytest.fixture(scope="session")
def trained(toy, stage2, tmp_path_factory):
    """trained(stage): the checkpoint of a 2-step run of the stage (made when first asked for)."""
    paths = {"train_seam": stage2 / "seam.pth"}

    def get(stage):
        if stage not in paths:
            out = tmp_path_factory.mktemp(f"trained_{SESSION[stage]}")
            stage_main(stage)(stage_argv(stage, toy, out, "--max_step", "2", stage2=stage2))
            paths[stage] = out / f"{SESSION[stage]}.pth"
        return paths[stage]

    return get


@pytest.fixture(scope="session")
def straight(toy, stage2, tmp_path_factory):
    """straight(stage): the final weights of the uninterrupted 6-step run, which every
    interrupted and resumed run of the same command must end at, bit for bit."""
    finals = {}

    def get(stage):
        if stage not in finals:
            out = tmp_path_factory.mktemp(f"straight_{SESSION[stage]}")
            stage_main(stage)(stage_argv(stage, toy, out, stage2=stage2))
            finals[stage] = torch.load(out / f"{SESSION[stage]}.pth", weights_only=True)
        return finals[stage]

    return get


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- scheduling
# Under pytest-xdist (scripts/test.sh: 2 workers, --dist worksteal) each worker first gets one
# contiguous half of the collected tests, and an idle worker then steals from the end of the other's
# queue. The suite's wall time is set by its few long end-to-end tests: started last, one of them
# would run alone at the end. So they go first, shared between the two halves by their cost
# (seconds on the 2-core developer machine, roughly, for all of a test's parameters together); the
# order of every other test is kept.
LONG = {
    "test_pipeline.py::test_demo_runs_every_stage_through_the_stage_scripts": 50,
    "test_distributed.py::test_two_processes_train_stage1_as_one_and_resume_exactly": 25,
    "test_ablation.py::test_the_runner_on_a_tiny_grid_writes_each_cell_then_the_table_and_plot": 25,
    "test_pipeline.py::test_reproduce_released_scores_three_checkpoints_and_says_pass_or_fail": 20,
    "test_learning.py::test_segmentation_fits_the_ground_truth_of_a_few_images": 10,
    "test_learning.py::test_seam_learns_the_image_labels": 9,
    "test_pipeline.py::test_stage_scripts_take_another_data_set": 12,
    "test_learning.py::test_affinitynet_separates_same_class_from_different_class_pairs": 6,
    "test_distributed.py::test_inference_under_torchrun_shards_the_list_and_writes_what_one_process_writes": 7,
    "test_distributed.py::test_two_processes_train_stage5_bn_groups_as_the_published_two_gpus": 8,
    "test_faults.py::test_an_interrupted_inference_says_how_far_it_got_and_continues": 10,
    "test_faults.py::test_kill_9_then_the_same_stage_script_ends_where_an_uninterrupted_run_does": 8,
}


def pytest_collection_modifyitems(session, config, items):
    named = {}
    for item in items:
        name = item.nodeid.split("/")[-1].split("[")[0]
        if name in LONG:
            named.setdefault(name, []).append(item.nodeid)
    cost = {nodeid: LONG[name] / len(ids) for name, ids in named.items() for nodeid in ids}  # spread over its params
    if not cost or len(items) < 2:
        return
    halves, loads = ([], []), [0, 0]
    for item in sorted((i for i in items if i.nodeid in cost), key=lambda i: -cost[i.nodeid]):
        side = loads.index(min(loads))
        halves[side].append(item)
        loads[side] += cost[item.nodeid]
    rest = [i for i in items if i.nodeid not in cost]
    first = max(0, len(items) // 2 - len(halves[0]))
    items[:] = halves[0] + rest[:first] + halves[1] + rest[first:]
