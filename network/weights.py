"""ResNet-38 weight files: the ImageNet MXNet `.params` (name mapping and conversion, NumPy
only), the width of a checkpoint, and the policy of what a stage takes from a weights file.

    python -m network.weights ilsvrc-cls_rna-a1_cls1000_ep-0001.params resnet38_imagenet.pth
"""
import re

import torch

from network.resnet38d import BACKBONE_NAMES
from tool.checkpoint import load_state_dict_file, load_weights_strict, save_state_dict, strip_module_prefix
from tool.mxnet_params import read_ndarray_file

_MX_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}


def _torch_key(mx_name):
    """Map an MXNet ResNet-38 A1 array name to the published PyTorch key (None: not in the trunk)."""
    name = mx_name.split(":", 1)[-1]
    if name == "conv1a_weight":
        return "conv1a.weight"
    m = re.fullmatch(r"bn7_(gamma|beta|moving_mean|moving_var)", name)
    if m:
        return f"bn7.{_MX_BN[m.group(1)]}"
    m = re.fullmatch(r"res(\d)(a|b\d+)_branch(\w+?)_weight", name)
    if m:
        return f"{_block_name(m.group(1), m.group(2))}.conv_branch{m.group(3)}.weight"
    m = re.fullmatch(r"bn(\d)(a|b\d+)_branch(\w+?)_(gamma|beta|moving_mean|moving_var)", name)
    if m:
        return f"{_block_name(m.group(1), m.group(2))}.bn_branch{m.group(3)}.{_MX_BN[m.group(4)]}"
    return None


def _block_name(stage, part):
    return f"b{stage}" if part == "a" else f"b{stage}_{part[1:]}"


def convert_mxnet_to_torch(path):
    """Backbone state dict (name -> float32 tensor) from the ImageNet `.params` file, NumPy only.

    `linear1000_*` (the ImageNet classifier) is dropped; any other unknown name is an error,
    so a wrong file does not convert silently.
    """
    state = {}
    for mx_name, array in read_ndarray_file(path).items():
        key = _torch_key(mx_name)
        if key is None:
            if "linear1000" in mx_name:
                continue
            raise ValueError(f"{path}: unexpected array {mx_name!r} for ResNet-38")
        state[key] = torch.from_numpy(array.astype("float32"))
    return state


def infer_width(state_dict):
    """The width multiplier a (possibly slim) checkpoint was built with, from bn7's channel count."""
    key = next((k for k in state_dict if k.endswith("bn7.weight")), None)
    if key is None:
        raise ValueError("not a ResNet-38 checkpoint: no bn7.weight")
    return state_dict[key].numel() / 4096


def infer_num_classes(state_dict, head):
    """The class count of a checkpoint's classifier `head` (e.g. "fc8", "cls_conv"), from its
    weight's output channels; None when the checkpoint has no such head."""
    key = next((k for k in state_dict if k == head + ".weight" or k.endswith("." + head + ".weight")), None)
    return None if key is None else int(state_dict[key].shape[0])


def _stage_heads():
    """The head module names of every stage's network."""
    from network import resnet38_aff, resnet38_seam, resnet38_seg

    return [set(m.Net.head_names) for m in (resnet38_aff, resnet38_seam, resnet38_seg)]


def load_pretrained(model, path, allow_pickle=False):
    """Initialise `model` from `path`: the ImageNet `.params`, a backbone-only `.pth`, the
    backbone of another stage's checkpoint (e.g. SEAM's for the segmentation net; its heads are
    named in the returned note and left out), or a full checkpoint of the same network (strict).

    Anything else (a missing backbone key, a wrong shape, head keys that only partly match) is a
    one-line error. Returns how the file was used, for the log.
    """
    if str(path).endswith(".params"):
        state = convert_mxnet_to_torch(path)
    else:
        state = strip_module_prefix(load_state_dict_file(path, allow_pickle=allow_pickle))
    state = model.adapt_state_dict(state)
    own = model.state_dict()
    trunk = {k for k in own if k.split(".", 1)[0] in BACKBONE_NAMES}

    def head_keys(keys):
        return {k for k in keys if k.split(".", 1)[0] not in BACKBONE_NAMES and not k.endswith("num_batches_tracked")}

    file_heads = head_keys(state)
    file_modules = {k.split(".", 1)[0] for k in file_heads}
    # Another stage's checkpoint (its heads exactly those of another of our networks, or none):
    # the trunk must match exactly and the heads stay fresh. A file whose heads are neither that
    # nor exactly ours (a damaged or foreign checkpoint of this network) fails strict loading below.
    other_stage = file_modules != set(model.head_names) and (not file_modules or file_modules in _stage_heads())
    if file_heads != head_keys(own) and other_stage:
        heads = {k: v for k, v in own.items() if k not in trunk}
        trunk_state = {k: v for k, v in state.items() if k not in file_heads}
        load_weights_strict(model, {**heads, **trunk_state}, source=str(path))
        left_out = sorted(file_modules)
        return f"backbone; left out the file's heads {', '.join(left_out)}" if left_out else "backbone"
    load_weights_strict(model, state, source=str(path))
    return "full"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Convert the ImageNet ResNet-38 .params file to a .pth")
    parser.add_argument("params", help="ilsvrc-cls_rna-a1_cls1000_ep-0001.params")
    parser.add_argument("out", help="output .pth (plain state dict)")
    args = parser.parse_args(argv)
    try:
        state = convert_mxnet_to_torch(args.params)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    save_state_dict(state, args.out)
    print(f"wrote {args.out} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
