"""The NumPy reader of MXNet `.params` files and the ResNet-38 name mapping."""
import os

import numpy as np
import pytest
import torch

from network import resnet38d, weights
from network.mxnet_params import read_ndarray_file
from tests.mxnet_writer import write_ndarray_file

DATA = os.path.join(os.path.dirname(__file__), "data")
PARAMS = os.path.join(DATA, "ademxapp_a1_names_shrunk.params")


def test_real_mxnet_file_converts_exactly():
    got = weights.convert_mxnet_to_torch(PARAMS)
    want = np.load(os.path.join(DATA, "ademxapp_a1_names_shrunk_expected.npz"), allow_pickle=False)
    assert sorted(got) == sorted(want.files)
    for k in want.files:
        assert got[k].dtype == torch.float32
        np.testing.assert_array_equal(got[k].numpy(), want[k])


def test_converted_names_are_the_backbone_keys():
    got = set(weights.convert_mxnet_to_torch(PARAMS))
    own = {k for k in resnet38d.Net(width=1 / 16).state_dict() if not k.endswith("num_batches_tracked")}
    assert got == own


@pytest.mark.parametrize("layout", ["v2", "v1", "legacy"])
def test_all_array_layouts_round_trip(tmp_path, layout):
    rng = np.random.default_rng(0)
    arrays = {
        "arg:conv1a_weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "aux:bn7_moving_var": rng.random(5).astype(np.float64),
        "arg:bn7_gamma": rng.random(5).astype(np.float16),
    }
    path = tmp_path / f"{layout}.params"
    write_ndarray_file(path, arrays, layout=layout)
    got = read_ndarray_file(path)
    assert list(got) == list(arrays)
    for k, a in arrays.items():
        assert got[k].dtype == a.dtype
        np.testing.assert_array_equal(got[k], a)
    state = weights.convert_mxnet_to_torch(path)
    assert set(state) == {"conv1a.weight", "bn7.running_var", "bn7.weight"}
    assert state["bn7.weight"].dtype == torch.float32


def test_truncated_file_is_a_clear_error(tmp_path):
    data = open(PARAMS, "rb").read()
    path = tmp_path / "cut.params"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.params: truncated"):
        read_ndarray_file(path)


def test_wrong_magic_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.params"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"bad\.params: not an MXNet NDArray file"):
        read_ndarray_file(path)
    data = bytearray(open(PARAMS, "rb").read())
    data[24:28] = (0xDEADBEEF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="unknown NDArray magic 0xDEADBEEF"):
        read_ndarray_file(path)


def test_unknown_array_name_is_rejected(tmp_path):
    path = tmp_path / "other.params"
    write_ndarray_file(path, {"arg:fc_weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="unexpected array 'arg:fc_weight'"):
        weights.convert_mxnet_to_torch(path)


def test_cli_converts_to_a_weights_only_pth(tmp_path):
    out = tmp_path / "imagenet.pth"
    weights.main([PARAMS, str(out)])
    state = torch.load(out, weights_only=True)
    assert len(state) == 191
    with pytest.raises(SystemExit, match="error: .*missing.params"):
        weights.main([str(tmp_path / "missing.params"), str(out)])
