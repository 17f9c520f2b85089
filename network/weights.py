"""Weights files and networks: reading a `.pth` strictly and without unpickling, what a stage
takes from `--weights`, and the network a checkpoint is (its record, or ResNet-38 for the
published files, which carry none).

    python -m network.weights ilsvrc-cls_rna-a1_cls1000_ep-0001.params resnet38_imagenet.pth
"""
import argparse
import copy
import os

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from network import STAGE_NETS, build_network, network_record
from network.backbone import StageNet
from network.resnet38d import convert_mxnet_to_torch


def load_state_dict_file(path, allow_pickle=False):
    """Load a `.pth` without unpickling arbitrary objects (opt-in `allow_pickle` for legacy
    files); a resumable checkpoint of ours gives its model. A bad file is one short line."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: weights file not found") from None
    except Exception as e:  # torch's reasons are paragraphs: the first line of the cause
        raise ValueError(f"{path}: cannot load as a weights-only checkpoint ({reason(e)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def reason(e, limit=100):
    """An exception in a few words: its first sentence (torch's refusals are paragraphs with the cause inside)."""
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "").split(". ")[0]
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def state_dict_mismatch(own, state_dict):
    """What keeps `state_dict` from loading strictly where `own` (a network's state dict) is, in
    one line: missing / unexpected / mis-shaped keys; None when it fits. Only missing
    `num_batches_tracked` buffers are tolerated. Reads names and shapes only (memory-mapped
    files stay unread)."""
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                 for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            problems.append(f"{what}: {shown}")
    return "; ".join(problems) or None


def in_model_layout(model, state_dict):
    """`state_dict` with the DataParallel / DDP prefix gone and the keys in the model's layout: a
    stage network's flat backbone may come nested under `backbone.` (the authors' DeepLab
    checkpoint holds ResNet-38 so). A copy: the caller's dict is left as it is."""
    state_dict = copy.copy(state_dict)
    consume_prefix_in_state_dict_if_present(state_dict, "module.")
    nested = any(k.startswith("backbone.") for k in state_dict)
    if nested and isinstance(model, StageNet) and model.backbone.flat_state_dict:
        consume_prefix_in_state_dict_if_present(state_dict, "backbone.")  # its _metadata too: only when nested
    return state_dict


def load_weights_strict(model, state_dict, source="state dict"):
    """Load with strict key/shape matching, in the model's layout; a ValueError naming every
    missing / unexpected / mis-shaped key otherwise."""
    state_dict = in_model_layout(model, state_dict)
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise ValueError(f"{source}: does not match {type(model).__module__}.{type(model).__name__}: {problems}")
    model.load_state_dict(state_dict, strict=False)

# the heads a published (record-less) checkpoint of each stage has, for its class count
_CLASSIFIER = {"seam": "fc8", "seg": "cls_conv"}


def network_for_checkpoint(state_dict, stage, source, **head_kwargs):
    """The network `state_dict` (a checkpoint of stage `stage`) was saved from, untrained: from its
    record, else (the published checkpoints, and ours from before records) ResNet-38 at the width
    of its bn7. `head_kwargs` not None override the record (e.g. use_pcm, radius)."""
    record = network_record(state_dict)
    given = {k: v for k, v in head_kwargs.items() if v is not None}
    if record is None:
        if stage in _CLASSIFIER and "num_classes" not in given:
            given["num_classes"] = checkpoint_num_classes(state_dict, stage)
            if given["num_classes"] is None:
                raise ValueError(f"{source}: no {_CLASSIFIER[stage]}.weight: not a {stage} checkpoint")
        bn7 = next((k for k in state_dict if k.endswith("bn7.weight")), None)
        if bn7 is None:
            raise ValueError(f"{source}: not a ResNet-38 checkpoint: no bn7.weight (and no network record)")
        return build_network(stage, backbone="resnet38d", width=state_dict[bn7].numel() / 4096, **given)
    if record.get("network") != stage:
        raise ValueError(f"{source}: a checkpoint of the {record.get('network')} network, not of {stage}")
    fields = {k: record[k] for k in STAGE_NETS[stage].record_fields if k in record}
    try:
        return build_network(stage, backbone=record["backbone"], width=record["width"], **{**fields, **given})
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def checkpoint_num_classes(state_dict, stage):
    """The class count a checkpoint's classifier has: its record's, else its head's (e.g. "fc8",
    "cls_conv") output channels; None when it has neither."""
    record = network_record(state_dict)
    if record is not None and "num_classes" in record:
        return int(record["num_classes"])
    head = _CLASSIFIER[stage] + ".weight"
    key = next((k for k in state_dict if k == head or k.endswith("." + head)), None)
    return None if key is None else int(state_dict[key].shape[0])


def load_pretrained(model, path, allow_pickle=False):
    """Initialise the stage network `model` from `path`: an ImageNet source its backbone knows
    (ResNet-38's `.params`, torchvision's `imagenet`), a `.pth` in the backbone's own names (a
    converted or torchvision ImageNet file), the backbone of another stage's checkpoint (e.g.
    SEAM's for the segmentation net; its heads are named in the returned note and left out), or a
    full checkpoint of the same network (strict).

    Anything else (a missing backbone key, a wrong shape, head keys that only partly match,
    another backbone's checkpoint) is a one-line error. Returns how the file was used, for the log.
    """
    source = str(path)
    native = model.backbone.pretrained_state(source)
    if native is not None:
        load_weights_strict(model.backbone, native, source=source)
        return "backbone"
    state = load_state_dict_file(path, allow_pickle=allow_pickle)
    record = network_record(state)
    if record is not None and record.get("backbone") != model.backbone.name:
        raise ValueError(f"{source}: a {record.get('backbone')} checkpoint; this network's backbone is "
                         f"{model.backbone.name}")
    state = in_model_layout(model, state)
    prefix = model.backbone.classifier_prefix
    if not model.backbone.flat_state_dict and not any(k.startswith("backbone.") for k in state):
        # the backbone's own names (torchvision's ImageNet files): its classifier left out
        load_weights_strict(model.backbone, {k: v for k, v in state.items() if not (prefix and k.startswith(prefix))},
                            source=source)
        return "backbone"
    own = model.state_dict()

    def head_keys(keys):
        return {k for k in keys if not model.is_backbone_key(k) and not k.endswith("num_batches_tracked")}

    file_heads = head_keys(state)
    file_modules = {k.split(".", 1)[0] for k in file_heads}
    # Another stage's checkpoint (its heads exactly those of another of our networks, or none):
    # the trunk must match exactly and the heads stay fresh. A file whose heads are neither that
    # nor exactly ours (a damaged or foreign checkpoint of this network) fails strict loading below.
    stage_heads = [set(net.head_names) for net in STAGE_NETS.values()]
    other_stage = file_modules != set(model.head_names) and (not file_modules or file_modules in stage_heads)
    if file_heads != head_keys(own) and other_stage:
        heads = {k: v for k, v in own.items() if not model.is_backbone_key(k)}
        trunk_state = {k: v for k, v in state.items() if k not in file_heads}
        load_weights_strict(model, {**heads, **trunk_state}, source=source)
        left_out = sorted(file_modules)
        return f"backbone; left out the file's heads {', '.join(left_out)}" if left_out else "backbone"
    load_weights_strict(model, state, source=source)
    return "full"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert the ImageNet ResNet-38 .params file to a .pth")
    parser.add_argument("params", help="ilsvrc-cls_rna-a1_cls1000_ep-0001.params")
    parser.add_argument("out", help="output .pth (plain state dict)")
    args = parser.parse_args(argv)
    try:
        state = convert_mxnet_to_torch(args.params)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    tmp = f"{args.out}.{os.getpid()}.tmp"  # beside it; created by torch.save, so with the umask's permissions
    try:  # complete or absent
        torch.save(state, tmp)
        os.replace(tmp, args.out)
    except (OSError, RuntimeError) as e:
        raise SystemExit(f"error: {args.out}: cannot write ({reason(e)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {args.out} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
