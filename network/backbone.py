"""The network contract: what a backbone provides, and how a stage's heads sit on any backbone.

A backbone is a subclass of `Backbone` (an `nn.Module` that supplies BN freezing and the
defaults below) that provides:

- `forward(x (N,3,H,W)) -> {"conv4", "conv5", "conv6"}`: three feature maps at output stride 8
  (h = ceil(H/8) or so), shallow to deep. SEAM's PCM and AffinityNet read all three; the CAM,
  AffinityNet's deepest branch and DeepLab read `conv6`.
- `channels`: the channel count of each of the three taps.
- `width`: the channel multiplier it was built with (1.0 = the full network); heads scale by it.
- `frozen`: True (the published recipe under ImageNet weights) keeps every BatchNorm of the
  backbone in eval mode on its ImageNet statistics with its affine fixed, and the first layers
  untrained; False trains all of it with batch-statistics BN (random initialisation only).
- `name`: what rebuilds it, a registry name (`resnet38d`) or an import path `package.module:Class`;
  checkpoints record it.
- `flat_state_dict`: True when its keys sit at the top level of a stage's state dict (ResNet-38,
  as in the published checkpoints); otherwise they sit under `backbone.`.
- weights: a `.pth` state dict in its own names loads into it (keys under `classifier_prefix`,
  an ImageNet classifier, left out); `pretrained_state(source)` gives its own state dict from any
  other source it knows (ResNet-38's MXNet `.params`, torchvision's `"imagenet"`), else None.

A backbone class is built as `cls(width=..., frozen=...)`. Register one under a short name with
`@register_backbone("name")`; an import path needs no registration.

A stage network (`StageNet`) holds the backbone as `self.backbone` and its heads as its other
children. It supplies, once for every stage: the four published parameter groups (backbone
weights / biases, head weights / biases), the dropout switch, the state-dict layout, and the
record a checkpoint carries of what it is (`network_record`). A stage subclass only builds its
heads and its forward.
"""
import importlib

from torch import nn

_BACKBONES = {}

# Attribute of a state dict (an OrderedDict) that records the network it belongs to. Not a key:
# the file stays a plain state dict (the published code's load_state_dict ignores it), and
# torch.load(weights_only=True) restores it.
RECORD_ATTR = "seam_network"


def scaled(channels, width):
    """A channel count at width multiplier `width` (at least 1)."""
    return max(1, int(round(channels * width)))


def register_backbone(name):
    """Class decorator: `--backbone name` builds this class."""

    def register(cls):
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = cls
        cls.name = name
        return cls

    return register


def backbone_names():
    return sorted(_BACKBONES)


def build_backbone(name, width=1.0, frozen=True):
    """`--backbone name`: a registered name, or an import path `package.module:Class`."""
    if name in _BACKBONES:
        cls = _BACKBONES[name]
    elif ":" not in name:
        raise ValueError(f"--backbone {name}: not one of {', '.join(backbone_names())} "
                         "and not an import path package.module:Class")
    else:
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--backbone {name}: cannot import it ({type(e).__name__}: {e})") from None
    backbone = cls(width=width, frozen=frozen)
    backbone.name = name  # an import path is recorded as given
    return backbone


class Backbone(nn.Module):
    """Base of the backbones: frozen BatchNorm and fixed first layers, as the contract says.

    A subclass sets `channels` and `frozen_modules` (the first layers, untrained when frozen),
    then calls `self.freeze()` at the end of its constructor.
    """

    name = None
    flat_state_dict = False
    classifier_prefix = None

    def __init__(self, width=1.0, frozen=True):
        super().__init__()
        self.width, self.frozen = width, frozen

    def frozen_modules(self):
        return []

    def freeze(self):
        if not self.frozen:
            return
        for m in self.frozen_modules():
            m.requires_grad_(False)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:  # BN on the ImageNet statistics: batch size and GPU split change nothing
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def pretrained_state(self, source):
        return None


class StageNet(nn.Module):
    """A stage's network: `self.backbone` (the contract above) and heads (every other child).

    `network`: the stage's name in checkpoint records (`seam`, `aff`, `seg`); `head_names`: its
    head modules; `record_fields`: constructor arguments the record keeps besides the backbone's.
    """

    network = None
    head_names = ()
    record_fields = ()

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        if backbone.flat_state_dict:
            clash = set(self.head_names) & {name for name, _ in backbone.named_children()}
            if clash:
                raise ValueError(f"head names {sorted(clash)} are also backbone modules")
            self.register_state_dict_post_hook(_flatten_backbone_keys)
            self.register_load_state_dict_pre_hook(_nest_backbone_keys)
        self.register_state_dict_post_hook(_attach_record)

    def get_parameter_groups(self):
        """The published four groups of trainable parameters: backbone weights / biases, head
        weights / biases (tool.optim gives them lr x1/x2/x10/x20, decay on weights only)."""
        groups = ([], [], [], [])
        for name, p in self.named_parameters():
            if p.requires_grad:
                is_head = not name.startswith("backbone.")
                groups[2 * is_head + name.endswith("bias")].append(p)
        return groups

    def disable_dropout(self):
        """Zero every dropout rate (backbone and heads): short from-scratch runs of slim networks
        learn far faster without channel dropout; the published recipe keeps it."""
        for m in self.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.p = 0.0
        return self

    def is_backbone_key(self, key):
        """Whether a key of this network's state dict belongs to the backbone (the names it owns)."""
        if not self.backbone.flat_state_dict:
            return key.startswith("backbone.")
        return key.split(".", 1)[0] in _top_names(self.backbone)

    def network_record(self):
        record = {"network": self.network, "backbone": self.backbone.name, "width": float(self.backbone.width)}
        return {**record, **{f: getattr(self, f) for f in self.record_fields}}


def _flatten_backbone_keys(module, state_dict, prefix, local_metadata):
    nested = prefix + "backbone."
    for key in [k for k in state_dict if k.startswith(prefix)]:  # popped and re-inserted: order kept
        state_dict[prefix + key.removeprefix(nested) if key.startswith(nested) else key] = state_dict.pop(key)
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:  # module versions, keyed by module path
        meta.pop(nested[:-1], None)
        for key in [k for k in meta if k.startswith(nested)]:
            meta[prefix + key.removeprefix(nested)] = meta.pop(key)


def _nest_backbone_keys(module, state_dict, prefix, *args):
    own = _top_names(module.backbone)
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if rest.split(".", 1)[0] in own:
            state_dict[prefix + "backbone." + rest] = state_dict.pop(key)


def _top_names(backbone):
    """The top-level names of a backbone's state dict (its modules and own tensors)."""
    return {name for name, _ in backbone.named_children()} | set(backbone._parameters) | set(backbone._buffers)


def _attach_record(module, state_dict, prefix, local_metadata):
    if hasattr(state_dict, "__dict__"):  # an OrderedDict (a plain dict destination cannot carry it)
        setattr(state_dict, RECORD_ATTR, module.network_record())
