"""The networks reproduce the published ones: state-dict names, goldens, loading rules."""
import argparse
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from network import build_network, resnet38_aff, resnet38_seam, resnet38_seg, resnet38d, resolve_network
from network.seam import SEAM
from network.weights import load_state_dict_file, load_weights_strict
from tests.reference_fill import DATA, filled_state_dict, read_key_list
from tool.engine.camfile import load_cam
from tool.engine.checkpoint import save_state_dict
from voc12.labels import load_cls_labels, load_img_id_list


@pytest.fixture(scope="module")
def filled_nets():
    """Each full-width network once for the module (about 105M parameters: seconds to build), in
    eval mode; the two with goldens hold the deterministic fill of their published listing (the
    plain backbone, which has none, is built on the meta device)."""
    with torch.device("meta"):  # names, shapes and dtypes only: no memory, no initialisation cost
        nets = {resnet38d: resnet38d.Net().eval()}
    for module, list_name in ((resnet38_seam, "resnet38_seam_state_dict.txt"),
                              (resnet38_aff, "resnet38_aff_state_dict.txt")):
        net = module.Net()
        load_weights_strict(net, filled_state_dict(list_name))
        nets[module] = net.eval()
    return nets


@pytest.mark.parametrize(
    "module,list_name",
    [(resnet38d, "resnet38d_state_dict.txt"), (resnet38_seam, "resnet38_seam_state_dict.txt"),
     (resnet38_aff, "resnet38_aff_state_dict.txt")],
)  # fmt: skip
def test_state_dict_names_shapes_and_order(filled_nets, module, list_name):
    want = read_key_list(list_name)
    got = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in filled_nets[module].state_dict().items()]
    assert got == want


def test_parameter_count_is_published(filled_nets):
    n = sum(p.numel() for p in filled_nets[resnet38_seam].parameters())
    assert 100e6 < n < 110e6


@pytest.fixture(scope="module")
def seam_net(filled_nets):
    return filled_nets[resnet38_seam]


def close(got, want, rtol=1e-4):
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
    return err <= rtol, err


@pytest.mark.parametrize("size", ["64x80", "57x43"])
def test_seam_golden(seam_net, size):
    g = np.load(os.path.join(DATA, "golden_seam.npz"), allow_pickle=False)
    with torch.no_grad():
        cam, cam_rv = seam_net(torch.from_numpy(g[f"input_{size}"]))
    ok, err = close(cam.numpy(), g[f"cam_{size}"])
    assert ok, err
    ok, err = close(cam_rv.numpy(), g[f"cam_rv_{size}"])
    assert ok, err


@pytest.mark.parametrize("size,offsets", [("96x112", 34), ("64x80", 12)])
def test_aff_golden(filled_nets, size, offsets):
    g = np.load(os.path.join(DATA, "golden_aff.npz"), allow_pickle=False)
    with torch.no_grad():
        aff = filled_nets[resnet38_aff](torch.from_numpy(g[f"input_{size}"]))
    assert aff.shape[1] == offsets
    ok, err = close(aff.numpy(), g[f"aff_{size}"])
    assert ok, err



def test_deeplab_golden():
    """The authors' stage-5 network (seamv1-pseudovoc: deeplabv1 on resnet38), every key of their
    listing filled by fill.py, run by their code in eval mode (golden_deeplab.npz)."""
    listing = read_key_list("deeplabv1_resnet38_state_dict.txt")
    state = filled_state_dict.__wrapped__("deeplabv1_resnet38_state_dict.txt")  # 124M values: not kept cached
    net = resnet38_seg.Net()
    ours = [(k if k.split(".", 1)[0] in net.head_names else "backbone." + k, tuple(v.shape),
             str(v.dtype).replace("torch.", "")) for k, v in net.state_dict().items()]
    assert ours == listing  # their keys, shapes and dtypes, in their order
    load_weights_strict(net, state)
    got = net.state_dict()
    assert all(torch.equal(got[k.removeprefix("backbone.")], v) for k, v in state.items())
    g = np.load(os.path.join(DATA, "golden_deeplab.npz"), allow_pickle=False)
    net.eval()
    for size in ("64x80", "57x43"):
        with torch.no_grad():
            logits = net(torch.from_numpy(g[f"input_{size}"])).numpy()
        assert logits.shape == g[f"logits_{size}"].shape
        ok, err = close(logits, g[f"logits_{size}"], rtol=1e-5)
        assert ok, (size, err)

def test_output_stride_and_feature_sizes():
    net = resnet38d.Net(width=1 / 16).eval()
    with torch.no_grad():
        d = net(torch.zeros(1, 3, 448, 448))
        assert d["conv6"].shape[2:] == (56, 56)
        assert net(torch.zeros(1, 3, 134, 134))["conv6"].shape[2:] == (17, 17)
    assert d["conv4"].shape[1] == net.channels["conv4"] == 32


def test_bn_frozen_and_early_blocks_not_trained():
    net = resnet38_seam.Net(width=1 / 16).train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad for m in bns)
    assert not any(p.requires_grad for p in net.backbone.b2_2.parameters())
    assert net.backbone.b3.conv_branch2a.weight.requires_grad and net.fc8.weight.requires_grad
    before = net.backbone.b3.bn_branch2a.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, net.backbone.b3.bn_branch2a.running_mean)  # no batch statistics ever


def test_parameter_groups_split_backbone_and_heads():
    net = resnet38_seam.Net(width=1 / 16)
    groups = net.get_parameter_groups()
    heads = {id(p) for m in (net.fc8, net.f8_3, net.f8_4, net.f9) for p in m.parameters()}
    assert {id(p) for p in groups[2]} == heads and not groups[3]
    assert not heads & {id(p) for p in groups[0]}
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert sum(len(g) for g in groups) == len(trainable)


def test_no_pcm_ablation_returns_the_cam():
    net = resnet38_seam.Net(width=1 / 16, use_pcm=False).eval()
    cam, cam_rv = net(torch.randn(1, 3, 48, 48))
    assert torch.equal(cam, cam_rv)


def test_network_aliases():
    assert resolve_network("network.resnet38_SEAM") == ("seam", "resnet38d")
    assert resolve_network("network.resnet38_aff", "aff") == ("aff", "resnet38d")
    net = build_network("network.resnet38_seam", width=1 / 16)
    assert type(net) is SEAM and type(net.backbone) is resnet38d.ResNet38d
    with pytest.raises(ValueError, match="--network network.nope"):
        resolve_network("network.nope")
    with pytest.raises(ValueError, match="--network network.resnet38_aff is the aff network; this stage trains seam"):
        build_network("network.resnet38_aff", stage="seam")


def test_strict_loading(tmp_path):
    net = resnet38_seam.Net(width=1 / 16)
    state = {"module." + k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "dp.pth"
    save_state_dict(state, path)
    other = resnet38_seam.Net(width=1 / 16)
    load_weights_strict(other, load_state_dict_file(path), source=str(path))  # DataParallel prefix accepted
    assert torch.equal(other.fc8.weight, net.fc8.weight)

    aff_state = resnet38_aff.Net(width=1 / 16).state_dict()
    with pytest.raises(ValueError) as e:
        load_weights_strict(other, aff_state, source="aff.pth")
    msg = str(e.value)
    assert "\n" not in msg and "aff.pth" in msg
    assert "missing: fc8.weight" in msg and "unexpected: f8_5.weight" in msg and "mis-shaped: f9.weight" in msg


def test_pickled_checkpoint_needs_opt_in(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"fc8.weight": torch.zeros(1), "note": argparse.Namespace(lr=0.01)}, path)
    with pytest.raises(ValueError, match="legacy.pth"):
        load_state_dict_file(path)
    assert "note" in load_state_dict_file(path, allow_pickle=True)


def test_load_pretrained_full_backbone_and_other_stage(tmp_path):
    from network.weights import load_pretrained

    src = resnet38_seam.Net(width=1 / 16)
    save_state_dict(src.state_dict(), tmp_path / "seam.pth")
    same = resnet38_seam.Net(width=1 / 16)
    assert load_pretrained(same, tmp_path / "seam.pth") == "full"
    assert torch.equal(same.fc8.weight, src.fc8.weight)

    trunk = {k: v for k, v in src.state_dict().items() if not k.startswith(("fc8", "f8_", "f9"))}
    save_state_dict(trunk, tmp_path / "trunk.pth")
    aff = resnet38_aff.Net(width=1 / 16)
    f9_before = aff.f9.weight.clone()
    assert load_pretrained(aff, tmp_path / "trunk.pth") == "backbone"
    assert torch.equal(aff.backbone.b4.conv_branch2a.weight, src.backbone.b4.conv_branch2a.weight)
    assert torch.equal(aff.f9.weight, f9_before)

    aff = resnet38_aff.Net(width=1 / 16)
    assert load_pretrained(aff, tmp_path / "seam.pth") == "backbone; left out the file's heads f8_3, f8_4, f9, fc8"
    assert torch.equal(aff.backbone.b7.conv_branch1.weight, src.backbone.b7.conv_branch1.weight)

    del trunk["b3.conv_branch2a.weight"]
    save_state_dict(trunk, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken\.pth: .*missing: b3\.conv_branch2a\.weight"):
        load_pretrained(resnet38_aff.Net(width=1 / 16), tmp_path / "broken.pth")


# ---------------------------------------------------------------- stage 2 of the filled network


def reference_cam(net, img_uint8, label20, scales=(0.5, 1.0, 1.5, 2.0)):
    """Independent transcription of the published infer_SEAM.py for one image."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pil = Image.fromarray(img_uint8)
    h, w = img_uint8.shape[:2]
    cam_list = []
    for s in scales:
        arr = np.asarray(pil.resize((round(w * s), round(h * s)), resample=Image.BICUBIC), dtype=np.float32)
        arr = ((arr / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1)
        for flip in (False, True):
            x = torch.from_numpy(np.ascontiguousarray(arr[:, :, ::-1] if flip else arr))[None]
            with torch.no_grad():
                _, cam = net(x)
            cam = F.interpolate(cam[:, 1:, :, :], (h, w), mode="bilinear", align_corners=False)[0]
            cam = cam.numpy() * label20.reshape(20, 1, 1)
            cam_list.append(np.flip(cam, axis=-1) if flip else cam)
    sum_cam = np.sum(cam_list, axis=0)
    sum_cam[sum_cam < 0] = 0
    cam_max = np.max(sum_cam, (1, 2), keepdims=True)
    cam_min = np.min(sum_cam, (1, 2), keepdims=True)
    sum_cam[sum_cam < cam_min + 1e-5] = 0
    norm_cam = (sum_cam - cam_min - 1e-5) / (cam_max - cam_min + 1e-5)
    return {i: norm_cam[i] for i in range(20) if label20[i] > 1e-5}


# Two of the published four scales (0.5, 1, 1.5, 2; pinned in tests/test_defaults.py), a down- and an
# upsampling: the same arithmetic per scale at a third of the full-width cost.
SCALES = (0.5, 1.5)


def test_cam_of_filled_published_net_matches_the_published_inference(seam_net, toy, tmp_path):
    """Stage 2 end to end (infer_seam.py on the filled checkpoint, from its file) against the
    published inference written out; here beside the goldens, whose filled network it shares."""
    import infer_seam

    state = filled_state_dict("resnet38_seam_state_dict.txt")
    save_state_dict(state, tmp_path / "filled.pth")
    name = load_img_id_list(toy / "train.txt")[0]
    (tmp_path / "one.txt").write_text(name + "\n")
    infer_seam.main(["--weights", str(tmp_path / "filled.pth"), "--voc12_root", str(toy),
                     "--infer_list", str(tmp_path / "one.txt"), "--cls_labels", str(toy / "cls_labels.txt"),
                     "--num_workers", "0", "--crf_workers", "0", "--out_cam", str(tmp_path / "cam"),
                     "--scales", *map(str, SCALES)])  # fmt: skip
    keys, cams = load_cam(tmp_path / "cam" / f"{name}.npz")

    img = np.asarray(Image.open(toy / "JPEGImages" / f"{name}.jpg").convert("RGB"))
    want = reference_cam(seam_net, img, load_cls_labels(toy / "cls_labels.txt")[name], SCALES)  # the same fill
    assert keys.tolist() == sorted(want)
    for k, cam in zip(keys, cams):
        assert np.ptp(cam) > 0.5  # a real map, not a degenerate one
        np.testing.assert_allclose(cam, want[int(k)], rtol=1e-4, atol=1e-5)
