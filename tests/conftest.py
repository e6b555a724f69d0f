"""Shared fixtures: deterministic torch, a private latlab cache folder."""

import pytest
import torch

from latlab.detection.data import make_dataset


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 16-image built-in dataset at 64 px, made once per test session (tiny searches train on it)."""
    return make_dataset(imgsz=64, n_train=16, n_val=8, root=tmp_path_factory.mktemp("data"))
