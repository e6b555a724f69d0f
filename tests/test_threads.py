"""torch_threads sets torch's intra-op thread count for a block and always restores it."""

import pytest
import torch

from latlab.errors import ConfigError
from latlab.threads import torch_threads


def test_sets_then_restores_also_on_errors():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other) as n:
        assert n == other == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:
        assert n == before
    with pytest.raises(ConfigError), torch_threads(0):
        pass
