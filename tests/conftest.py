"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run the test with one torch thread: tiny networks train faster on one thread than on two, and the
    other core is left to the env workers (and to CI). Restores the previous count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
