"""Built-in data presets: the default renders exactly as before presets existed; the easy preset is its own,
deterministic dataset with its own class list; unknown presets are one-line errors."""

import hashlib

import numpy as np
import pytest

from latlab.detection.data import builtin_dir, load_dataset
from latlab.detection.synthetic import CLASS_NAMES, get_preset, render_image
from latlab.errors import DataError

# sha256 over images + labels of render_image(0, split, i, 128) for split 0/1, i < 30, computed with the
# generator as it was before presets (commit 0bd1d69): cached datasets and the shipped reference results
# (trained on shapes10) stay valid only while this holds.
SHAPES10_BEFORE_PRESETS = "083f52ef8568a8bf4aca3f4b82b0e14d01a6bf3b9c90b4031b0ab21f814f01f7"


def test_default_preset_renders_as_before_presets():
    h = hashlib.sha256()
    for split in (0, 1):
        for i in range(30):
            img, lab = render_image(0, split, i, 128)
            h.update(img.tobytes())
            h.update(lab.tobytes())
    assert h.hexdigest() == SHAPES10_BEFORE_PRESETS


def test_easy_preset_is_deterministic_with_its_own_classes(tmp_path):
    a = render_image(5, 0, 3, 96, "shapes4-easy")
    b = render_image(5, 0, 3, 96, "shapes4-easy")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], render_image(5, 0, 3, 96)[0])
    ds = load_dataset("builtin", imgsz=64, n_train=12, n_val=4, preset="shapes4-easy", root=tmp_path)
    assert ds.names == ["disc", "triangle", "plus", "bar"] and ds.nc == 4
    labels = np.concatenate(ds.train.labels)
    assert labels[:, 0].max() < 4 and min(len(x) for x in ds.train.labels) >= 1
    assert max(len(x) for x in ds.train.labels) <= 3  # objects=(1, 4): at most three per image
    # boxes are 20-45 % of the side before rotation: none below 32 px × 0.8 aspect / 160 of the image
    assert labels[:, 3:5].max(1).min() > 0.15
    assert builtin_dir(64, 12, 4, root=tmp_path, preset="shapes4-easy").name.startswith("shapes4-easy-64px")
    assert get_preset("shapes10").names == list(CLASS_NAMES)


def test_unknown_preset_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"unknown built-in data preset .nope.*shapes10"):
        load_dataset("builtin", imgsz=64, n_train=2, n_val=1, preset="nope", root=tmp_path)
