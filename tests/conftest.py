"""Shared fixtures: deterministic torch, a private latlab cache folder."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _torch_defaults():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Machine-speed references and other cache files go to a temporary folder, not the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LATLAB_CACHE_DIR", str(tmp_path_factory.mktemp("latlab-cache")))
    yield
    mp.undo()
