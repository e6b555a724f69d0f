"""example_input: zeros by default, a seeded randn that leaves the global RNG alone, or the global RNG's."""

import pytest
import torch

from latlab.errors import ConfigError
from latlab.inputs import example_input


def test_zeros_seeded_and_global_randn():
    z = example_input(16)
    assert z.shape == (1, 3, 16, 16) and z.dtype == torch.float32 and not z.any()
    state = torch.get_rng_state()
    a = example_input(8, batch=2, channels=4, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # its own generator
    assert torch.equal(a, torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(3)
    g = example_input(8, fill="randn")
    torch.manual_seed(3)
    assert torch.equal(g, torch.randn(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="unknown fill"):
        example_input(8, fill="ones")
    with pytest.raises(ConfigError, match="seed only applies"):
        example_input(8, seed=1, fill="zeros")
