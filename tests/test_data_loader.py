"""Lazy decoding, DataLoader workers, and corrupt images / bad labels skipped, warned and counted in a run."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from latlab.cli import main
from latlab.detection.data import BatchLoader, LetterboxDataset, UnreadableImage, collate, load_dataset
from latlab.errors import ConfigError
from latlab.runs import read_meta


def write_dataset(root, *, n_train=6, n_val=2, corrupt="train/t1.png", bad_class="train/t2.txt"):
    """A YOLO data YAML over PNGs drawn with numpy; one truncated image and one label with class 5 of 2."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(n):
            img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            img[12:36, 16:40] = 255
            Image.fromarray(img).save(root / "images" / split / f"{split[0]}{k}.png")
            (root / "labels" / split / f"{split[0]}{k}.txt").write_text(f"{k % 2} 0.4375 0.5 0.375 0.5\n")
    if corrupt:
        path = root / "images" / corrupt
        path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data cut off
    if bad_class:
        (root / "labels" / bad_class).write_text("0 0.4375 0.5 0.375 0.5\n5 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [square, other]\n")
    return root / "data.yaml"


def test_corrupt_image_is_dropped_from_its_batch_with_a_warning(tmp_path):
    ds = load_dataset(write_dataset(tmp_path, bad_class=""))
    items = LetterboxDataset(ds.train, 64)
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*t1\.png: cannot decode image"):
        bad = items[1]
    assert isinstance(bad, UnreadableImage) and bad.path.endswith("t1.png")
    assert str(tmp_path / "images" / "train" / "t1.png") in ds.train.skipped_images
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known-bad image is not decoded (or warned about) again
        assert isinstance(items[1], UnreadableImage)
    batch = collate([items[0], items[1], items[2]])
    imgs, targets = batch
    assert imgs.shape == (2, 3, 64, 64) and targets[:, 0].tolist() == [0, 1]
    assert list(batch.unreadable) == [bad.path]
    empty = collate([items[1]])
    assert empty.imgs.shape == (0, 3, 64, 64) and len(empty) == 0
    assert ds.skip_counts() == {"skipped_labels": 0, "skipped_images": 1}


def test_worker_processes_give_the_same_batches_and_report_unreadable_images(tmp_path):
    order = torch.tensor([3, 1, 0, 5, 4, 2])
    batches = {}
    for workers in (0, 2):
        ds = load_dataset(write_dataset(tmp_path / f"w{workers}", bad_class=""))
        loader = BatchLoader(LetterboxDataset(ds.train, 64), 4, workers=workers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batches[workers] = [list(loader.epoch(order)) for _ in range(2)]  # two epochs: workers persist
        assert [p.rsplit("/", 1)[-1] for p in ds.train.skipped_images] == ["t1.png"]  # carried back from a worker
    for a, b in zip(batches[0], batches[2], strict=True):
        assert len(a) == 2 and [len(x) for x in a] == [3, 2]  # t1 dropped from the first batch
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x.imgs, y.imgs) and torch.equal(x.targets, y.targets)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_run_counts_skipped_images_and_labels_in_meta(tmp_path, monkeypatch, capsys):
    data = write_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning) as caught:
        code = main(["train", "yolov5n", "--data", str(data), "--epochs", "1", "--imgsz", "64", "--batch", "4",
                     "--name", "tiny", "--workers", "0", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    messages = [str(w.message) for w in caught]
    assert any("t2.txt:2: class 5 out of range [0, 2)" in m for m in messages)
    assert any("skipping unreadable image" in m and "t1.png" in m for m in messages)
    meta = read_meta(tmp_path / "results" / "train" / "tiny")
    assert (meta["skipped_images"], meta["skipped_labels"]) == (1, 1)
    final = json.loads((tmp_path / "results" / "train" / "tiny" / "final.json").read_text())
    assert final["data"]["train_images"] == 6 and final["data"]["train_boxes"] == 6


def test_workers_and_batch_are_checked(tmp_path):
    ds = load_dataset(write_dataset(tmp_path, corrupt="", bad_class=""))
    with pytest.raises(ConfigError, match=r"workers must be >= 0 .* got -1"):
        BatchLoader(LetterboxDataset(ds.train, 64), 4, workers=-1)
    with pytest.raises(ConfigError, match="batch must be >= 1, got 0"):
        BatchLoader(LetterboxDataset(ds.train, 64), 0)


def test_builtin_split_pickles_its_memmap_by_file(tmp_path):
    """DataLoader workers started by spawn get the split pickled: the cached images travel as a file name."""
    split = load_dataset("builtin", imgsz=64, n_train=8, n_val=2, seed=1, root=tmp_path).train
    blob = pickle.dumps(split)
    assert len(blob) < split.images.nbytes / 4
    again = pickle.loads(blob)
    assert isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(again.load_image(3), split.load_image(3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_for_cuda_are_pinned(tmp_path):
    ds = load_dataset(write_dataset(tmp_path, bad_class=""))
    loader = BatchLoader(LetterboxDataset(ds.train, 64), 4, workers=2, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader.epoch(torch.arange(6)))
    assert all(b.imgs.is_pinned() and b.targets.is_pinned() for b in batches)
    assert len(ds.train.skipped_images) == 1
