"""Datasets: built-in generation, YOLO and VOC loaders, label validation, letterbox and augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image

from latlab.detection.augment import AugmentConfig, hsv_jitter, random_affine
from latlab.detection.data import (
    LetterboxDataset,
    collate,
    letterbox,
    load_dataset,
    load_voc,
    load_yolo,
    make_dataset,
    parse_yolo_label_file,
)
from latlab.detection.synthetic import CLASS_NAMES, render_image
from latlab.errors import DataError


@pytest.fixture(scope="module")
def tiny_builtin(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return load_dataset("builtin", imgsz=64, n_train=6, n_val=3, seed=3, root=root), root


def test_builtin_is_deterministic_and_cached(tiny_builtin, tmp_path):
    ds, root = tiny_builtin
    assert ds.nc == 10 and ds.names == list(CLASS_NAMES)
    assert len(ds.train) == 6 and len(ds.val) == 3
    img, lab = render_image(3, 0, 4, 64)
    np.testing.assert_array_equal(ds.train.load_image(4), img)
    np.testing.assert_array_equal(ds.train.labels[4], lab)
    again = load_dataset("builtin", imgsz=64, n_train=6, n_val=3, seed=3, root=tmp_path)
    np.testing.assert_array_equal(again.val.load_image(2), ds.val.load_image(2))
    other = render_image(4, 0, 4, 64)[0]
    assert not np.array_equal(other, img)
    folder = make_dataset(imgsz=64, n_train=6, n_val=3, seed=3, root=root)
    assert (folder / "meta.json").exists()
    assert load_dataset(folder).train.n_boxes == ds.train.n_boxes  # the cache folder loads directly


def test_builtin_labels_are_valid_yolo_boxes():
    for i in range(30):
        img, lab = render_image(0, 1, i, 160)
        assert img.shape == (160, 160, 3) and img.dtype == np.uint8
        assert 1 <= len(lab) <= 7
        assert set(lab[:, 0].astype(int)) <= set(range(10))
        x1, x2 = lab[:, 1] - lab[:, 3] / 2, lab[:, 1] + lab[:, 3] / 2
        y1, y2 = lab[:, 2] - lab[:, 4] / 2, lab[:, 2] + lab[:, 4] / 2
        assert (x1 >= 0).all() and (x2 <= 1).all() and (y1 >= 0).all() and (y2 <= 1).all()
        assert (lab[:, 3] * 160 >= 4).all()


def write_yolo(tmp_path, label_lines, nc=3):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((40, 80, 3), 50 * k, np.uint8)).save(tmp_path / "images" / split / f"im{k}.png")
        (tmp_path / "labels" / split / "im0.txt").write_text("\n".join(label_lines) + "\n")
    yaml_path = tmp_path / "data.yaml"
    names = [f"c{i}" for i in range(nc)]
    yaml_path.write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnc: {nc}\nnames: {names}\n")
    return yaml_path


def test_yolo_loader_reads_images_and_labels(tmp_path):
    ds = load_yolo(write_yolo(tmp_path, ["0 0.5 0.5 0.2 0.4", "2 0.25 0.5 0.1 0.1"]))
    assert ds.nc == 3 and ds.names == ["c0", "c1", "c2"]
    assert len(ds.train) == 2 and ds.train.n_boxes == 2
    assert ds.train.labels[1].shape == (0, 5)  # no label file: a background image
    assert ds.train.load_image(0).shape == (40, 80, 3)
    img, lab = LetterboxDataset(ds.train, 64)[0]
    assert img.shape == (3, 64, 64)
    # 80x40 → 64x32, padded 16 px top and bottom: y centre 0.5 stays, heights halve.
    assert lab[0].tolist() == pytest.approx([0, 0.5, 0.5, 0.2, 0.2])
    assert load_dataset(tmp_path / "data.yaml").train.n_boxes == 2


@pytest.mark.parametrize(("line", "message"), [
    ("3 0.5 0.5 0.1 0.1", "class 3 out of range"),
    ("0 1.5 0.5 0.1 0.1", "normalised to"),
    ("0 0.5 0.5 0.1", "expected 5 values"),
    ("a 0.5 0.5 0.1 0.1", "non-numeric"),
    ("0 0.5 0.5 0 0.1", "must be > 0"),
    ("0 0.95 0.5 0.2 0.1", "outside the image"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "x.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(DataError, match=f"x.txt:2: .*{message}"):
        parse_yolo_label_file(path, nc=3, skip_bad_labels=False)


def test_skip_bad_labels_warns_and_records(tmp_path):
    yaml_path = write_yolo(tmp_path, ["0 0.5 0.5 0.2 0.4", "7 0.5 0.5 0.1 0.1"])
    with pytest.raises(DataError, match=r"im0\.txt:2"):
        load_yolo(yaml_path, skip_bad_labels=False)
    with pytest.warns(UserWarning, match=r"im0\.txt:2"):
        ds = load_yolo(yaml_path)
    assert ds.train.n_boxes == 1
    assert len(ds.train.skipped_labels) == 1 and "class 7" in ds.train.skipped_labels[0]
    assert ds.summary()["skipped_labels"] == 2  # one per split


def test_missing_paths_raise(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope.yaml")
    with pytest.raises(DataError, match="not a known dataset format"):
        load_dataset(tmp_path)
    (tmp_path / "d.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(DataError, match="split path"):
        load_yolo(tmp_path / "d.yaml")
    (tmp_path / "e.yaml").write_text("train: a\nval: b\nnc: 3\nnames: [a]\n")
    with pytest.raises(DataError, match="nc=3 but 1 names"):
        load_yolo(tmp_path / "e.yaml")


def write_voc(root, objects):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(root / "JPEGImages" / "0001.jpg")
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objects)
    (root / "Annotations" / "0001.xml").write_text(
        f"<annotation><size><width>200</width><height>100</height><depth>3</depth></size>{objs}</annotation>")
    for s in ("train", "val"):
        (root / "ImageSets" / "Main" / f"{s}.txt").write_text("0001\n")


def test_voc_loader_converts_boxes(tmp_path):
    write_voc(tmp_path, [("dog", 0, (1, 1, 100, 50)), ("cat", 1, (10, 10, 20, 20))])
    ds = load_voc(tmp_path)
    assert ds.nc == 20
    lab = ds.train.labels[0]
    assert lab.shape == (1, 5)  # the difficult cat is excluded, as in YOLOv5's VOC conversion
    assert lab[0].tolist() == pytest.approx([11, 0.25, 0.25, 0.5, 0.5])
    assert load_dataset(tmp_path).val.n_boxes == 1
    assert load_voc(tmp_path, include_difficult=True).train.n_boxes == 2


def test_voc_bad_objects_raise(tmp_path):
    write_voc(tmp_path, [("unicorn", 0, (1, 1, 10, 10))])
    with pytest.raises(DataError, match=r"0001\.xml: object 1: class 'unicorn'"):
        load_voc(tmp_path, skip_bad_labels=False)
    write_voc(tmp_path, [("dog", 0, (1, 1, 300, 10))])
    with pytest.raises(DataError, match="outside"):
        load_voc(tmp_path, skip_bad_labels=False)


def test_letterbox_and_collate():
    img = np.zeros((30, 60, 3), np.uint8)
    out, lab = letterbox(img, np.array([[1, 0.5, 0.5, 1.0, 1.0]], np.float32), 60)
    assert out.shape == (3, 60, 60)
    assert out[0, 0, 0] == 114 and out[0, 30, 30] == 0
    assert lab[0].tolist() == pytest.approx([1, 0.5, 0.5, 1.0, 0.5])
    imgs, rows = collate([(out, torch.from_numpy(lab)), (out, torch.zeros(0, 5)), (out, torch.from_numpy(lab))])
    assert imgs.shape == (3, 3, 60, 60)
    assert rows[:, 0].tolist() == [0, 2]


def test_affine_moves_boxes_with_the_pixels():
    # White squares on black: after a random affine the white region's extent must match the new label.
    imgs = torch.zeros(4, 3, 96, 96)
    rows = []
    for b in range(4):
        imgs[b, :, 30:50, 40:70] = 1.0
        rows.append([b, 0, 55 / 96, 40 / 96, 30 / 96, 20 / 96])
    g = torch.Generator().manual_seed(0)
    cfg = AugmentConfig(degrees=0, translate=0.1, scale=0.4)
    out, t = random_affine(imgs, torch.tensor(rows), cfg, g)
    assert len(t) == 4
    for b in range(4):
        ys, xs = torch.nonzero(out[b, 0] > 0.5 + 114 / 255 / 2, as_tuple=True)
        cx, cy, w, h = (t[b, 2:] * 96).tolist()
        assert xs.min().item() == pytest.approx(cx - w / 2, abs=1.5)
        assert xs.max().item() + 1 == pytest.approx(cx + w / 2, abs=1.5)
        assert ys.min().item() == pytest.approx(cy - h / 2, abs=1.5)
        assert ys.max().item() + 1 == pytest.approx(cy + h / 2, abs=1.5)


def test_hsv_value_gain_keeps_hue_and_range():
    imgs = torch.rand(3, 3, 8, 8)
    g = torch.Generator().manual_seed(1)
    out = hsv_jitter(imgs, AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0.4), g)
    assert out.min() >= 0 and out.max() <= 1
    ratio = out / imgs
    # Pure value gain: one factor per image, wherever nothing was clipped.
    for b in range(3):
        r = ratio[b][out[b] < 1]
        assert (r.max() - r.min()).item() < 1e-5
