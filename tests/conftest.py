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


@pytest.fixture(autouse=True)
def as_in_a_notebook(monkeypatch):
    """Tests run as in IPython or a notebook kernel, where Ctrl-C during ``fit()`` stops the run
    and ``fit()`` returns (case C25), whether or not an earlier test made an IPython shell. A
    test of the plain-script behaviour (``fit()`` re-raises KeyboardInterrupt) undoes this with
    ``monkeypatch.setattr("nnwidgets.engine.trainer.in_ipython", lambda: False)`` or runs a
    subprocess."""
    monkeypatch.setattr("nnwidgets.engine.trainer.in_ipython", lambda: True)
