import pytest
import torch

# The suite pins itself to the CPU, where the exact references hold (CAMs at rtol 1e-4, bit-exact
# resume): on a GPU, TF32 convolutions and nondeterministic backward kernels would fail them.
# Tests that need CUDA take the `cuda` fixture, which gives the device back (or skips).
HAS_CUDA = torch.cuda.is_available()
torch.cuda.is_available = lambda: False


@pytest.fixture
def cuda(monkeypatch):
    """The CUDA device, for the GPU tests (skipped without one; run them with scripts/gpu_check.sh)."""
    if not HAS_CUDA:
        pytest.skip("needs a CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return torch.device("cuda")


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny nets: on a busy 2-core machine, OpenMP threads waiting on each other
    cost far more than they gain (a forward pass measured 1.6 s with 2 threads, 4 ms with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
