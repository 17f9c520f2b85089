"""A wrong or damaged weights file stops a script in one line naming it, before anything is written:
another stage's checkpoint (ours, with its record, or a published-format file without one), another
width, a damaged authors' file, random bytes, a truncated file, a resume file of another network."""
import numpy as np
import pytest
import torch

from network import resnet38_aff, resnet38_seam, resnet38_seg
from tool.engine.checkpoint import save_state_dict, training_state

WIDTH = 0.0625

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the files


def ours(module, width=WIDTH):
    """Our checkpoint of a fresh network (its record included)."""

    def make(path, stage2):
        torch.manual_seed(0)
        save_state_dict(module.Net(width=width).state_dict(), path)

    return make


def published_format(module):
    """A plain state dict, as the published code saved them: no record."""

    def make(path, stage2):
        torch.save(dict(module.Net(width=WIDTH).state_dict()), path)

    return make


def trained_seam(plain):
    """The shared 2-step SEAM checkpoint (tests/conftest.py), or its tensors as a plain dict."""

    def make(path, stage2):
        state = torch.load(stage2 / "seam.pth", weights_only=True)
        torch.save(dict(state) if plain else state, path)

    return make


def random_bytes(path, stage2):
    path.write_bytes(np.random.default_rng(0).bytes(1000))


def truncated(path, stage2):
    save_state_dict(resnet38_aff.Net(width=WIDTH).state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])


def authors_layout(damage):
    """A slim DeepLab checkpoint in the authors' key layout (backbone under `backbone.`), damaged."""

    def make(path, stage2):
        heads = ("conv_fov", "bn_fov", "conv_fov2", "bn_fov2", "cls_conv")
        sd = {(k if k.startswith(heads) else "backbone." + k): v
              for k, v in resnet38_seg.Net(width=WIDTH).state_dict().items()}
        if damage in ("no cls_conv", "no cls_conv, extra head"):
            sd = {k: v for k, v in sd.items() if not k.startswith("cls_conv")}
        if damage in ("extra head", "no cls_conv, extra head"):
            sd["aux_head.weight"] = torch.zeros(1)
        if damage == "one buffer missing":
            del sd["bn_fov2.running_var"]
        torch.save(sd, path)

    return make


def wide_resume(path, stage2):
    """A resume file of stage 1 at width 1/8 (other shapes than the width-1/16 run's)."""
    model = resnet38_seam.Net(width=0.125)
    torch.save(training_state(model, torch.optim.SGD(model.parameters(), lr=0.01), 1), path)


# ---------------------------------------------------------------- the command lines


def infer_seam(toy, path, tmp):
    return ["--weights", str(path), "--voc12_root", str(toy), "--cls_labels", str(toy / "cls_labels.txt"),
            "--infer_list", str(toy / "train.txt"), "--out_cam", str(tmp / "out")]


def infer_aff(toy, path, tmp, stage2):
    return ["--weights", str(path), "--voc12_root", str(toy), "--cam_dir", str(stage2 / "cam"), "--out_rw",
            str(tmp / "out")]


def infer_seg(toy, path, tmp):
    return ["--weights", str(path), "--voc12_root", str(toy), "--infer_list", str(toy / "val.txt"), "--out_seg",
            str(tmp / "out"), "--num_workers", "0", "--crf_workers", "0", "--device", "cpu"]


def train(stage, resume=False):
    def argv(toy, path, tmp, stage2):
        from tests.conftest import stage_argv

        given = ["--resume", str(path)] if resume else ["--weights", str(path)]
        return stage_argv(stage, toy, tmp / "out", *given, stage2=stage2)

    return argv


def no_stage2(argv):
    return lambda toy, path, tmp, stage2: argv(toy, path, tmp)


# (id, file, script, its command line, what the line says: `exact`, or its start, end and parts)
CASES = [
    ("another stage's (ours) at infer_seam", ours(resnet38_aff), "infer_seam", no_stage2(infer_seam),
     dict(starts="error: {path}")),
    ("another stage's (published format) at infer_seam", published_format(resnet38_aff), "infer_seam",
     no_stage2(infer_seam), dict(exact="error: {path}: no fc8.weight: not a seam checkpoint")),
    ("stage 1's (ours) at infer_aff", trained_seam(plain=False), "infer_aff", infer_aff,
     dict(says=["{path}: a checkpoint of the seam network, not of aff"])),
    ("stage 1's (published format) at infer_aff", trained_seam(plain=True), "infer_aff", infer_aff,
     dict(says=["unexpected: fc8.weight"])),
    ("stage 1's (ours) at infer_seg", ours(resnet38_seam), "infer_seg", no_stage2(infer_seg),
     dict(exact="error: {path}: a checkpoint of the seam network, not of seg")),
    ("another stage's (ours) at infer_seg", ours(resnet38_aff), "infer_seg", no_stage2(infer_seg),
     dict(says=["{path}"])),
    ("random bytes at infer_seg", random_bytes, "infer_seg", no_stage2(infer_seg), dict(says=["{path}"])),
    ("truncated at infer_seg", truncated, "infer_seg", no_stage2(infer_seg), dict(says=["{path}"])),
    ("random bytes as train_seam's --weights", random_bytes, "train_seam", train("train_seam"),
     dict(says=["{path}"])),
    ("truncated as train_seam's --weights", truncated, "train_seam", train("train_seam"), dict(says=["{path}"])),
    ("a damaged authors' file at infer_seg", authors_layout("no cls_conv, extra head"), "infer_seg",
     no_stage2(infer_seg), dict(says=["missing: cls_conv.weight, cls_conv.bias", "unexpected: aux_head.weight"])),
    *[(f"authors' file with {damage} as train_seg's --weights", authors_layout(damage), "train_seg", train("train_seg"),
       dict(says=["does not match network.deeplab.DeepLabV1"])) for damage in
      ("no cls_conv", "extra head", "one buffer missing")],
    ("a wider stage 1 as train_seg's --weights", ours(resnet38_seam, width=2 * WIDTH), "train_seg",
     train("train_seg"), dict(says=["mis-shaped"])),
    ("a resume file of a wider network at train_seam", wide_resume, "train_seam", train("train_seam", resume=True),
     dict(starts="error: {path}: not a checkpoint of this network (mis-shaped: conv1a.weight (8, 3, 3, 3) vs "
                 "(4, 3, 3, 3), ", ends="(195 in all))")),
]


@pytest.mark.parametrize("make, script, argv, want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_or_damaged_checkpoint_is_one_line_before_anything_is_written(toy, stage2, tmp_path, make, script,
                                                                             argv, want):
    import importlib

    path = tmp_path / "w.pth"
    make(path, stage2)
    with pytest.raises(SystemExit) as e:
        importlib.import_module(script).main(argv(toy, path, tmp_path, stage2))
    msg = str(e.value)
    assert msg.startswith("error: ") and "\n" not in msg, msg
    if "exact" in want:
        assert msg == want["exact"].format(path=path)
    assert msg.startswith(want.get("starts", "").format(path=path)), msg
    assert msg.endswith(want.get("ends", "")), msg
    for part in want.get("says", ()):
        assert part.format(path=path) in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]  # no output folder, log or checkpoint
