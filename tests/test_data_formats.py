"""Dataset formats on fixtures written here: ultralytics data YAML, COCO JSON, and format detection."""

import json

import numpy as np
import pytest
from PIL import Image

from latlab.detection.data import FORMATS, load_coco, load_dataset, load_yolo
from latlab.errors import DataError


def png(path, w=80, h=40, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def write_ultralytics(root, *, names="{0: person, 1: car, 2: dog}"):
    """train = a folder (2 images) + a txt list (1 image elsewhere); val = a folder (1 image, no label)."""
    for k in range(2):
        png(root / "ds" / "images" / "train" / f"a{k}.png")
        (root / "ds" / "labels" / "train").mkdir(parents=True, exist_ok=True)
    (root / "ds" / "labels" / "train" / "a0.txt").write_text("0 0.5 0.5 0.2 0.4\n2 0.25 0.5 0.1 0.1\n")
    (root / "ds" / "labels" / "train" / "a1.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    png(root / "ds" / "images" / "extra" / "b0.png")
    (root / "ds" / "labels" / "extra").mkdir(parents=True)
    (root / "ds" / "labels" / "extra" / "b0.txt").write_text("2 0.5 0.5 0.3 0.3\n")
    (root / "ds" / "extra.txt").write_text("./images/extra/b0.png\n")
    png(root / "ds" / "images" / "val" / "v0.png")
    (root / "ds" / "labels" / "val").mkdir(parents=True)
    (root / "ds" / "labels" / "val" / "v0.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    png(root / "ds" / "images" / "val" / "v1.png")  # no label file: a background image
    yaml_path = root / "cfg" / "data.yaml"
    yaml_path.parent.mkdir()
    yaml_path.write_text(f"path: ../ds\ntrain: [images/train, extra.txt]\nval: images/val\nnames: {names}\n"
                         "download: https://example.invalid/ds.zip\n")
    return yaml_path


def test_ultralytics_yaml_loads_images_boxes_and_names(tmp_path):
    ds = load_dataset(write_ultralytics(tmp_path))
    assert ds.names == ["person", "car", "dog"] and ds.nc == 3
    assert [f.name for f in ds.train.files] == ["a0.png", "a1.png", "b0.png"]
    assert (len(ds.train), ds.train.n_boxes, len(ds.val), ds.val.n_boxes) == (3, 4, 2, 1)
    assert ds.train.labels[2][0].tolist() == pytest.approx([2, 0.5, 0.5, 0.3, 0.3])
    assert ds.val.labels[1].shape == (0, 5)
    assert ds.skip_counts() == {"skipped_labels": 0, "skipped_images": 0}


def test_ultralytics_names_list_and_nc(tmp_path):
    ds = load_yolo(write_ultralytics(tmp_path, names="[person, car, dog]\nnc: 3"))
    assert ds.names == ["person", "car", "dog"]


@pytest.mark.parametrize(("names", "message"), [
    ("{0: person, 2: car, 3: dog}", "ids must be 0..2"),
    ("[person, car]\nnc: 3", "nc=3 but 2 names"),
    ("[]", "non-empty list"),
])
def test_ultralytics_bad_names(tmp_path, names, message):
    with pytest.raises(DataError, match=message):
        load_yolo(write_ultralytics(tmp_path, names=names))


def test_missing_labels_folder_is_an_error_naming_it(tmp_path):
    yaml_path = write_ultralytics(tmp_path)
    for f in (tmp_path / "ds" / "labels" / "val").iterdir():
        f.unlink()
    (tmp_path / "ds" / "labels" / "val").rmdir()
    missing = (tmp_path / "ds" / "labels" / "val").resolve()
    with pytest.raises(DataError, match=f"val labels folder {missing} not found"):
        load_yolo(yaml_path)
    missing.mkdir()  # present but empty: zero boxes is never what was meant either
    with pytest.raises(DataError, match=f"no label files for the val split in {missing}"):
        load_yolo(yaml_path)


def test_ultralytics_path_not_found(tmp_path):
    (tmp_path / "d.yaml").write_text("path: nowhere\ntrain: a\nval: b\nnames: [x]\n")
    with pytest.raises(DataError, match="path 'nowhere' not found"):
        load_yolo(tmp_path / "d.yaml")


def coco_doc(split):
    """Categories with ids 90, 3, 1 (out of order): sorted ids 1, 3, 90 → classes 0 dog, 1 cat, 2 zebra."""
    return {
        "images": [{"id": 11, "file_name": f"{split}_0.png", "width": 200, "height": 100},
                   {"id": 12, "file_name": f"{split}_1.png", "width": 200, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 3, "bbox": [20, 10, 60, 40], "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 90, "bbox": [190, 90, 20, 20], "iscrowd": 0},  # overhangs
            {"id": 3, "image_id": 11, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1},  # crowd: left out
            {"id": 4, "image_id": 11, "category_id": 7, "bbox": [0, 0, 10, 10], "iscrowd": 0},  # unknown id
            {"id": 5, "image_id": 11, "category_id": 1, "bbox": [100, 0, 100, 100]},
        ],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
    }


def write_coco(root):
    for split in ("train2017", "val2017"):
        for k in range(2):
            png(root / split / f"{split}_{k}.png", 200, 100)
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco_doc(split)))
    return root


@pytest.mark.filterwarnings("ignore:skipping bad label")
def test_coco_boxes_and_category_remapping(tmp_path):
    with pytest.warns(UserWarning, match=r"instances_train2017\.json: annotation 4 \(image train2017_0\.png\): "
                                         r"category_id 7"):
        ds = load_dataset(write_coco(tmp_path))
    assert ds.names == ["dog", "cat", "zebra"]
    assert ds.train.files == [tmp_path / "train2017" / "train2017_0.png", tmp_path / "train2017" / "train2017_1.png"]
    # By hand, on the 200x100 image: [20, 10, 60, 40] → centre (50, 30) → 0.25, 0.3; size 0.3 x 0.4.
    # [190, 90, 20, 20] clipped to (190..200, 90..100) → centre 0.975, 0.95; size 0.05 x 0.1.
    # [100, 0, 100, 100] → 0.75, 0.5, 0.5, 1.0. The crowd box and category 7 are not there.
    np.testing.assert_allclose(ds.train.labels[0], [[1, 0.25, 0.3, 0.3, 0.4], [2, 0.975, 0.95, 0.05, 0.1],
                                                    [0, 0.75, 0.5, 0.5, 1.0]], rtol=1e-6)
    assert ds.train.labels[1].shape == (0, 5)  # no annotations: a background image
    assert ds.skip_counts() == {"skipped_labels": 2, "skipped_images": 0}  # one per split
    assert "category_id 7" in ds.val.skipped_labels[0]


@pytest.mark.filterwarnings("ignore:skipping bad label")
def test_coco_strict_and_structure_errors(tmp_path):
    write_coco(tmp_path)
    with pytest.raises(DataError, match=r"annotation 4 .*category_id 7 is not one of the 3 categories"):
        load_coco(tmp_path, skip_bad_labels=False)
    (tmp_path / "annotations" / "instances_val2014.json").write_text("{}")
    with pytest.raises(DataError, match=r"expected one instances_val\*\.json, found instances_val2014\.json, "
                                        r"instances_val2017\.json"):
        load_coco(tmp_path)
    with pytest.raises(DataError, match=r"instances_val2014\.json: missing list 'images'"):
        load_coco(tmp_path, val="val2014")
    (tmp_path / "annotations" / "instances_val2014.json").unlink()
    (tmp_path / "val2017" / "val2017_0.png").unlink()
    with pytest.raises(DataError, match=r"no images folder holding val2017_0\.png"):
        load_coco(tmp_path)


def test_unknown_format_names_what_was_tried(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path}: not a known dataset format")
    for fmt in FORMATS:
        assert f"{fmt.name}: {fmt.looks_like}" in message
    with pytest.raises(DataError, match="data path not found"):
        load_dataset(tmp_path / "nope")
