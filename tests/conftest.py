import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny nets: on a busy 2-core machine, OpenMP threads waiting on each other
    cost far more than they gain (a forward pass measured 1.6 s with 2 threads, 4 ms with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
