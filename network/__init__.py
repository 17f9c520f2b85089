"""Networks. `build_network(name, ...)` accepts ours and the published module spellings."""
import importlib

_ALIASES = {
    "network.resnet38_SEAM": "network.resnet38_seam",
    "resnet38_SEAM": "network.resnet38_seam",
    "resnet38_seam": "network.resnet38_seam",
    "resnet38_aff": "network.resnet38_aff",
    "resnet38d": "network.resnet38d",
    "resnet38_seg": "network.resnet38_seg",
}


def network_module(name):
    """Resolve `--network` (e.g. `network.resnet38_SEAM`) to its module; clear error otherwise."""
    module = _ALIASES.get(name, name)
    if not module.startswith("network."):
        module = "network." + module
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ValueError(f"--network {name}: no such network module") from None


def build_network(name, **kwargs):
    return network_module(name).Net(**kwargs)
