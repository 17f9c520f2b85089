"""train_seam.py's transformations and ablation arms through the stage script, and PCM's inputs
kept in the checkpoint so that inference rebuilds the same network."""
import pytest
import torch

import infer_seam
import train_seam
from network import build_network, network_record
from network.weights import network_for_checkpoint
from voc12.toy import generate_toy_voc

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("arms")
    generate_toy_voc(str(root), n_train_aug=4, n_train=2, n_val=2, size=40, seed=3)
    return root


def train(toy, out, *extra):
    train_seam.main(["--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"), "--cls_labels",
                     str(toy / "cls_labels.txt"), "--session_name", str(out / "seam"), "--tblog_dir", str(out / "tb"),
                     "--weights", "none", "--batch_size", "2", "--num_workers", "0", "--width", "0.03125",
                     "--crop_size", "40", "--resize_long", "40", "48", "--max_step", "2", "--log_interval", "1",
                     *extra])
    log = (out / "tb" / f"{str(out / 'seam').replace('/', '_')}.log").read_text()
    return torch.load(out / "seam.pth", weights_only=True), log


@pytest.mark.parametrize("arm", [["--transform", "flip"], ["--transform", "rotate:-15..15"],
                                 ["--transform", "translate:0.1"], ["--transform", "rescale:0.5+flip"]],
                         ids=lambda arm: arm[-1])
def test_each_transformation_trains_through_the_stage_script(toy, tmp_path, arm):
    state, log = train(toy, tmp_path, *arm)
    assert f"transform: {arm[-1]}" in log and "er=" in log and "ecr=" in log
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_the_single_branch_baseline_trains_on_the_classification_loss_alone(toy, tmp_path):
    state, log = train(toy, tmp_path, "--single_branch")
    steps = [line for line in log.splitlines() if line.startswith("step ")]
    assert steps and all("cls=" in s and "er=" not in s and "ecr=" not in s and "min_pool" not in s for s in steps)
    assert network_record(state)["use_pcm"] is False


def test_pcm_features_are_recorded_and_inference_rebuilds_that_network(toy, tmp_path):
    state, _ = train(toy, tmp_path, "--pcm_features", "image,conv5", "--ecr_top_ratio", "0.5")
    record = network_record(state)
    assert record["pcm_features"] == "image,conv5" and not any(k.startswith("f8_3.") for k in state)
    rebuilt = network_for_checkpoint(state, "seam", "seam.pth")
    assert rebuilt.pcm_features == "image,conv5" and list(rebuilt.state_dict()) == list(state)
    infer_seam.main(["--weights", str(tmp_path / "seam.pth"), "--voc12_root", str(toy), "--infer_list",
                     str(toy / "train.txt"), "--cls_labels", str(toy / "cls_labels.txt"), "--num_workers", "0",
                     "--scales", "1.0", "--out_cam", str(tmp_path / "cam")])
    assert len(list((tmp_path / "cam").iterdir())) == 2


def test_the_published_network_has_every_pcm_input_and_a_bad_choice_is_one_line():
    net = build_network("seam", width=0.03125)
    assert net.pcm_features == "image,conv4,conv5" and {"f8_3.weight", "f8_4.weight"} <= set(net.state_dict())
    assert net.f9.in_channels == 3 + net.f8_3.out_channels + net.f8_4.out_channels
    with pytest.raises(ValueError, match="--pcm_features conv6"):
        build_network("seam", width=0.03125, pcm_features="conv6")


@pytest.mark.parametrize("flags, says", [(["--single_branch", "--transform", "flip"], "no second branch"),
                                         (["--ecr_top_ratio", "2"], "at most 1"),
                                         (["--transform", "spin:3"], "not one of")])
def test_contradictions_are_one_line_before_anything_is_written(toy, tmp_path, flags, says):
    with pytest.raises(SystemExit, match=says):
        train(toy, tmp_path, *flags)
    assert not any(tmp_path.iterdir())
