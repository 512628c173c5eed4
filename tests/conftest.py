"""Settings shared by the whole test suite."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Run the suite with one intra-op thread: the models are tiny, and on a busy 2-core
    machine a second OpenMP thread only contends (measured up to ~35x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
