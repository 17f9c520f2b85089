"""The network contract: torchvision backbones and a user's own through every stage, checkpoints
that say what they are, weights in each backbone's formats."""
import os

import pytest
import torch
import torchvision
from torch import nn

import evaluation
import infer_aff
import infer_seam
import infer_seg
import train_aff
import train_seam
import train_seg
from network import build_network, network_record, resnet38_seam
from network.backbone import Backbone
from network.resnet import ResNet50
from network.resnet38d import ResNet38d
from network.weights import load_pretrained, load_state_dict_file, network_for_checkpoint
from tool.engine.checkpoint import save_state_dict
from voc12.toy import generate_toy_voc


class TinyBackbone(Backbone):
    """A backbone that exists only here: three taps at output stride 8, nothing else of ours."""

    def __init__(self, width=1.0, frozen=True):
        super().__init__(width=width, frozen=frozen)
        c = max(4, int(32 * width))
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU())
        self.deep = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, 1, 2, dilation=2), nn.ReLU())
        self.channels = {"conv4": 2 * c, "conv5": 2 * c, "conv6": 4 * c}
        self.freeze()

    def frozen_modules(self):
        return [self.stem]

    def forward(self, x):
        conv4 = self.down(self.stem(x))  # N, 2c, H/8, W/8
        return {"conv4": conv4, "conv5": conv4 * 0.5, "conv6": self.deep(conv4)}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    generate_toy_voc(str(root), n_train_aug=8, n_train=4, n_val=2, size=48, seed=3)
    return root


def data(toy):
    return ["--voc12_root", str(toy), "--num_workers", "0"]


def train(toy, out, *extra):
    return [*data(toy), "--train_list", str(toy / "train_aug.txt"), "--tblog_dir", str(out / "tb"), "--weights", "none",
            "--batch_size", "4", "--crop_size", "48", "--max_step", "2", "--log_interval", "1", *extra]


def score(toy, predict_dir, split, *extra):
    return evaluation.main(["--list", str(toy / f"{split}.txt"), "--predict_dir", str(predict_dir),
                            "--gt_dir", str(toy / "SegmentationClass"), "--logfile", "", "--num_workers", "1", *extra])


@pytest.mark.parametrize("arch", ["resnet50", "resnet101"])
def test_torchvision_state_dict_loads_strictly(tmp_path, arch):
    imagenet = getattr(torchvision.models, arch)()  # ImageNet's layout, built here, never downloaded
    with torch.no_grad():
        imagenet.layer4[0].conv2.weight.normal_()
    save_state_dict(imagenet.state_dict(), tmp_path / "imagenet.pth")
    net = build_network("seam", backbone=arch)
    assert load_pretrained(net, tmp_path / "imagenet.pth") == "backbone"
    assert torch.equal(net.backbone.layer4[0].conv2.weight, imagenet.layer4[0].conv2.weight)
    assert net.backbone.layer4[1].conv2.dilation == (4, 4) and net.backbone.layer4[0].conv2.stride == (1, 1)
    with torch.no_grad():
        taps = net.eval().backbone(torch.zeros(1, 3, 64, 80))
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "conv4": (512, 8, 10), "conv5": (1024, 8, 10), "conv6": (2048, 8, 10)}

    broken = dict(imagenet.state_dict())
    del broken["layer2.0.conv1.weight"]
    broken["layer5.weight"] = torch.zeros(1)
    save_state_dict(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError) as e:
        load_pretrained(build_network("seam", backbone=arch), tmp_path / "broken.pth")
    msg = str(e.value)
    assert "\n" not in msg and "broken.pth" in msg
    assert "missing: layer2.0.conv1.weight" in msg and "unexpected: layer5.weight" in msg


def test_imagenet_weights_come_through_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # offline, at once: the connection is refused
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(url)
    net = build_network("aff", backbone="resnet50")
    with pytest.raises(ValueError) as e:
        load_pretrained(net, "imagenet")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"--weights imagenet: cannot download {url}")
    assert msg.endswith(f"place that file at {cached}")
    imagenet = torchvision.models.resnet50()
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(imagenet.state_dict(), cached)
    assert load_pretrained(net, "imagenet") == "backbone"
    assert torch.equal(net.backbone.conv1.weight, imagenet.conv1.weight)
    with pytest.raises(ValueError, match="--width 1.0, not 0.5"):
        load_pretrained(build_network("aff", backbone="resnet50", width=0.5), "imagenet")
    with pytest.raises(ValueError, match="ResNet-38's ImageNet weights are the MXNet file"):
        load_pretrained(build_network("aff"), "imagenet")


def test_checkpoint_record_round_trips(tmp_path):
    for net, record in (
        (build_network("seam", backbone="resnet50", width=0.25, num_classes=7, use_pcm=False),
         {"network": "seam", "backbone": "resnet50", "width": 0.25, "num_classes": 7, "use_pcm": False,
          "pcm_features": "image,conv4,conv5"}),
        (build_network("aff", width=0.0625, radius=3),
         {"network": "aff", "backbone": "resnet38d", "width": 0.0625, "radius": 3}),
        (build_network("seg", backbone="resnet101", width=0.125, frozen=False, num_classes=5),
         {"network": "seg", "backbone": "resnet101", "width": 0.125, "num_classes": 5}),
    ):
        path = tmp_path / f"{record['network']}.pth"
        save_state_dict(net.state_dict(), path)
        state = load_state_dict_file(path)
        assert network_record(state) == record
        rebuilt = network_for_checkpoint(state, record["network"], str(path))
        assert type(rebuilt) is type(net) and type(rebuilt.backbone) is type(net.backbone)
        rebuilt.load_state_dict(state)  # strict
        assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values()))
        with pytest.raises(ValueError, match=f"a checkpoint of the {record['network']} network, not of "):
            network_for_checkpoint(state, "seam" if record["network"] != "seam" else "aff", str(path))


def test_our_resnet38_file_is_a_plain_published_state_dict(tmp_path):
    ours = resnet38_seam.Net(width=0.0625, num_classes=6)
    save_state_dict(ours.state_dict(), tmp_path / "ours.pth")
    loaded = torch.load(tmp_path / "ours.pth", weights_only=True)
    # keys and order of the published network; the record is an attribute, not a key
    assert list(loaded) == list(ours.state_dict()) and list(loaded)[0] == "conv1a.weight"
    assert all("." in k for k in loaded)
    published = resnet38_seam.Net(width=0.0625, num_classes=6)
    nn.Module.load_state_dict(published, loaded, strict=True)
    # a published-format file (no record) is ResNet-38 at the width of its bn7
    plain = {k: v for k, v in loaded.items()}
    net = network_for_checkpoint(plain, "seam", "published.pth")
    assert type(net.backbone) is ResNet38d and net.backbone.width == 0.0625 and net.num_classes == 6
    with pytest.raises(ValueError, match="other.pth: not a ResNet-38 checkpoint: no bn7.weight"):
        network_for_checkpoint(dict(build_network("seam", backbone="resnet50", width=0.125).state_dict()), "seam",
                               "other.pth")


def test_another_backbones_checkpoint_is_one_line(tmp_path):
    save_state_dict(build_network("seam", backbone="resnet50", width=0.125).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError) as e:
        load_pretrained(build_network("aff", width=0.125), tmp_path / "r50.pth")
    assert str(e.value) == f"{tmp_path / 'r50.pth'}: a resnet50 checkpoint; this network's backbone is resnet38d"


def test_parameter_groups_and_freezing_on_a_torchvision_backbone():
    net = build_network("seam", backbone="resnet50", width=0.125).train()
    groups = net.get_parameter_groups()
    heads = {id(p) for m in (net.fc8, net.f8_3, net.f8_4, net.f9) for p in m.parameters()}
    assert {id(p) for p in groups[2]} == heads and not groups[1] and not groups[3]
    assert not any(p.requires_grad for p in net.backbone.layer1.parameters())
    assert not net.backbone.conv1.weight.requires_grad and net.backbone.layer2[0].conv1.weight.requires_grad
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad for m in bns)
    net.disable_dropout()
    assert net.dropout7.p == 0.0
    unfrozen = build_network("seam", backbone="resnet50", width=0.125, frozen=False).train()
    assert all(p.requires_grad for p in unfrozen.backbone.parameters())
    assert all(m.training for m in unfrozen.backbone.modules() if isinstance(m, nn.BatchNorm2d))


def test_every_stage_on_resnet50(toy, tmp_path):
    """Stages 1-5 with --backbone resnet50 (narrow bottlenecks), inference with no network flag."""
    r50 = ["--backbone", "resnet50", "--width", "0.0625"]
    train_seam.main(train(toy, tmp_path, "--session_name", str(tmp_path / "seam"), "--resize_long", "48", "64",
                          "--cls_labels", str(toy / "cls_labels.txt"), *r50))
    assert network_record(load_state_dict_file(tmp_path / "seam.pth"))["backbone"] == "resnet50"
    infer_seam.main(["--weights", str(tmp_path / "seam.pth"), *data(toy), "--cls_labels", str(toy / "cls_labels.txt"),
                     "--infer_list", str(toy / "train_aug.txt"), "--crf_workers", "0", "--out_cam",
                     str(tmp_path / "cam"), "--out_crf", str(tmp_path / "crf")])
    assert 0 <= score(toy, tmp_path / "cam", "train", "--type", "npz", "--t", "0.3")["miou"] <= 100
    # stage 3 from stage 1's trunk (its heads left out), then the walk
    train_aff.main(train(toy, tmp_path, "--session_name", str(tmp_path / "aff"), "--la_crf_dir",
                         str(tmp_path / "crf_4.0"), "--ha_crf_dir", str(tmp_path / "crf_24.0"),
                         "--weights", str(tmp_path / "seam.pth"), *r50))
    log = (tmp_path / "tb" / f"{str(tmp_path / 'aff').replace('/', '_')}.log").read_text()
    assert "(backbone; left out the file's heads f8_3, f8_4, f9, fc8)" in log
    infer_aff.main(["--weights", str(tmp_path / "aff.pth"), *data(toy), "--infer_list", str(toy / "train.txt"),
                    "--cam_dir", str(tmp_path / "cam"), "--out_rw", str(tmp_path / "rw")])
    assert 0 <= score(toy, tmp_path / "rw", "train")["miou"] <= 100
    # stage 5 on the walk's labels, segmentation of val
    train_seg.main(train(toy, tmp_path, "--session_name", str(tmp_path / "seg"), "--train_list",
                         str(toy / "train.txt"), "--label_dir", str(tmp_path / "rw"), "--max_step", "1", *r50))
    infer_seg.main(["--weights", str(tmp_path / "seg.pth"), *data(toy), "--infer_list", str(toy / "val.txt"),
                    "--no-crf", "--out_seg", str(tmp_path / "seg"),
                    "--scales", "1.0"])
    assert len(os.listdir(tmp_path / "seg")) == 2 and 0 <= score(toy, tmp_path / "seg", "val")["miou"] <= 100


def test_a_backbone_from_outside_network_trains_and_infers(toy, tmp_path):
    """The contract is all a backbone needs: this file's class, named by its import path."""
    path = "tests.test_backbones:TinyBackbone"
    train_seam.main(train(toy, tmp_path, "--session_name", str(tmp_path / "seam"), "--resize_long", "48", "64",
                          "--cls_labels", str(toy / "cls_labels.txt"), "--backbone", path, "--width", "0.25"))
    state = load_state_dict_file(tmp_path / "seam.pth")
    assert network_record(state) == {"network": "seam", "backbone": path, "width": 0.25, "num_classes": 21,
                                     "use_pcm": True, "pcm_features": "image,conv4,conv5"}
    assert "backbone.stem.0.weight" in state and "fc8.weight" in state
    infer_seam.main(["--weights", str(tmp_path / "seam.pth"), *data(toy), "--cls_labels", str(toy / "cls_labels.txt"),
                     "--infer_list", str(toy / "train.txt"), "--crf_workers", "0", "--out_cam", str(tmp_path / "cam")])
    assert sorted(os.listdir(tmp_path / "cam")) == sorted(f"{n}.npz" for n in (toy / "train.txt").read_text().split())


def test_backbone_flag_errors_are_one_line(toy, tmp_path):
    for backbone, message in (("resnet7", "--backbone resnet7: not one of resnet101, resnet38d, resnet50"),
                              ("nowhere.module:Net", "--backbone nowhere.module:Net: cannot import it")):
        with pytest.raises(SystemExit) as e:
            train_seam.main(train(toy, tmp_path, "--backbone", backbone))
        assert str(e.value).startswith(f"error: {message}") and "\n" not in str(e.value)
    assert not (tmp_path / "tb").exists()


def test_a_network_spelling_of_another_stage_is_refused(toy, tmp_path):
    with pytest.raises(SystemExit, match="--network network.resnet38_aff is the aff network; this stage trains seam"):
        train_seam.main(train(toy, tmp_path, "--network", "network.resnet38_aff"))
    assert isinstance(build_network("network.resnet38_SEAM", backbone="resnet50", width=0.125).backbone, ResNet50)
