"""Networks: a stage's heads (seam, aff, seg) on a backbone (network/backbone.py: the contract).

    build_network("seam", backbone="resnet50", num_classes=21)
    build_network("network.resnet38_SEAM")          # the published spellings: ResNet-38
    network.weights.network_for_checkpoint(state_dict, "seam", path)  # what a checkpoint says it is
"""
from network import resnet, resnet38d  # noqa: F401  (registers the backbones)
from network.affinitynet import AffinityNet
from network.backbone import RECORD_ATTR, backbone_names, build_backbone
from network.deeplab import DeepLabV1
from network.seam import SEAM

STAGE_NETS = {"seam": SEAM, "aff": AffinityNet, "seg": DeepLabV1}

# The published `--network` module spellings (network.resnet38_SEAM, network.resnet38_aff) and
# ours (network.resnet38_seam, ..._seg), with or without `network.`: (stage, backbone).
_ALIASES = {f"{package}resnet38_{name}": (name.lower(), "resnet38d")
            for package in ("network.", "") for name in ("SEAM", "seam", "aff", "seg")}


def resolve_network(name, stage=None):
    """`--network` (a stage name or a published spelling) -> (stage, backbone or None)."""
    if name in STAGE_NETS:
        resolved = (name, None)
    elif name in _ALIASES:
        resolved = _ALIASES[name]
    else:
        raise ValueError(f"--network {name}: no such network (one of {', '.join(STAGE_NETS)} "
                         "or a published spelling such as network.resnet38_SEAM)")
    if stage is not None and resolved[0] != stage:
        raise ValueError(f"--network {name} is the {resolved[0]} network; this stage trains {stage}")
    return resolved


def build_network(name, backbone=None, width=1.0, frozen=True, stage=None, **head_kwargs):
    """A stage's network: `name` a stage (seam, aff, seg) or a published spelling (whose backbone
    is ResNet-38), `backbone` a registered name or an import path `package.module:Class`, taking
    the place of the spelling's; `stage`: the stage `name` must be. The head's arguments as its
    class has them."""
    stage, implied = resolve_network(name, stage)
    return STAGE_NETS[stage](build_backbone(backbone or implied or "resnet38d", width=width, frozen=frozen),
                             **head_kwargs)


def network_record(state_dict):
    """The record a state dict of ours carries ({network, backbone, width, ...}), or None."""
    return getattr(state_dict, RECORD_ATTR, None)


__all__ = ["STAGE_NETS", "backbone_names", "build_network", "network_record", "resolve_network"]
