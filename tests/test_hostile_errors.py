"""Hostile inputs, issue 18 findings 5 and 7: no silently wrong model, and one latlab error (never a Python
traceback) for undecodable, malformed or oversized files."""

import json
import struct
import textwrap
import zlib
from pathlib import Path

import pytest
import torch
from test_hostile_bounds import TINY, model_yaml, one_line
from torch import nn

from latlab.detection.checkpoint import load_checkpoint
from latlab.detection.data import load_yolo, parse_voc_xml, parse_yolo_label_file, read_image
from latlab.errors import ConfigError, DataError, LatlabError, TableError
from latlab.lut.table import Entry, LatencyTable
from latlab.ops.builder import build_model
from latlab.search.space import DEFAULT_SPACE, load_space
from latlab.yamlio import read_yaml


# ---------------------------------------------------------------------------------------------- finding 5
def test_existing_local_file_wins_over_the_zoo_name(tmp_path, monkeypatch):
    model_yaml(tmp_path, TINY, name="yolov5n.yaml")
    monkeypatch.chdir(tmp_path)
    m = build_model("yolov5n.yaml")
    assert len(m.layers) == 6 and m.nc == 2  # the local 6-layer file, not the zoo's YOLOv5n
    assert len(build_model("yolov5n").layers) > 6  # the bare name is still the zoo model


def test_yolov5_activation_key_is_applied_to_default_convs(tmp_path):
    m = build_model(model_yaml(tmp_path, "activation: nn.ReLU()\n" + TINY))
    acts = {type(mod.act) for mod in m.modules() if type(mod).__name__ == "Conv"}
    assert acts == {nn.ReLU}
    plain = build_model(model_yaml(tmp_path, TINY, name="plain.yaml"))
    assert {type(mod.act) for mod in plain.modules() if type(mod).__name__ == "Conv"} == {nn.SiLU}


def test_yolov5_activation_key_keeps_explicit_choices(tmp_path):
    body = "activation: nn.Hardswish()\n" + TINY.replace("[16, 3, 2]]]", "[16, 3, 2, None, 1, 1, relu6]]]")
    m = build_model(model_yaml(tmp_path, body))
    acts = [type(mod.act) for mod in m.modules() if type(mod).__name__ == "Conv"]
    assert acts == [nn.Hardswish] * 4 + [nn.ReLU6]


@pytest.mark.parametrize("value", ["nn.Foo()", "os.system('x')", 3])
def test_unknown_activation_key_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="'activation'"):
        build_model(model_yaml(tmp_path, f"activation: {value}\n" + TINY))


# ---------------------------------------------------------------------------------------------- finding 7
def test_non_utf8_yaml(tmp_path, capsys):
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"nc: 2 # caf\xe9\xff\nbackbone: []\nhead: []\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_yaml(p)
    assert "not UTF-8" in one_line(capsys, "build", str(p))


def test_non_utf8_label_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"0 0.5 0.5 0.1 0.1\xff\n")
    with pytest.raises(DataError, match="not UTF-8"):
        parse_yolo_label_file(p, 2, skip_bad_labels=False)


def test_list_nested_500_deep(tmp_path, capsys):
    p = tmp_path / "deep.yaml"
    p.write_text("backbone: " + "[" * 500 + "]" * 500 + "\nhead: []\n")
    with pytest.raises(ConfigError, match=r"nested.*LATLAB_MAX_YAML_DEPTH"):
        read_yaml(p)
    one_line(capsys, "build", str(p))


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_width_multiple_in_yaml(tmp_path, value):
    with pytest.raises(ConfigError, match="width_multiple must be a finite number"):
        build_model(model_yaml(tmp_path, TINY.replace("nc: 2", f"nc: 2\nwidth_multiple: {value}")))


def test_non_finite_width_multiple_option(capsys):
    assert "width_multiple" in one_line(capsys, "build", "yolov5n", "--width-multiple", "nan")


def test_empty_backbone(tmp_path):
    with pytest.raises(ConfigError, match=r"backbone.*empty"):
        build_model(model_yaml(tmp_path, "nc: 2\nbackbone: []\nhead: []\n"))


@pytest.mark.parametrize("obj", [[1, 2], torch.zeros(3), "hello", {"model": {}, "nc": "abc"}])
def test_checkpoints_of_the_wrong_shape(tmp_path, obj):
    p = tmp_path / "bad.pt"
    torch.save(obj, p)
    with pytest.raises(DataError, match=r"bad\.pt"):
        load_checkpoint(p)


@pytest.mark.parametrize("body", ["train: a\nval: a\nnc: abc\nnames: [x]\n", "train: a\nval: a\nnames: 10\n",
                                  "train: 5\nval: a\nnames: [x]\n"])
def test_data_yaml_wrong_types(tmp_path, body):
    (tmp_path / "a").mkdir()
    p = tmp_path / "d.yaml"
    p.write_text(body)
    with pytest.raises(DataError, match=r"d\.yaml: '(nc|names|train)'"):
        load_yolo(p)


def test_voc_difficult_yes(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(textwrap.dedent("""\
        <annotation><size><width>100</width><height>100</height></size>
        <object><name>cat</name><difficult>yes</difficult>
        <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object></annotation>"""))
    with pytest.raises(DataError, match=r"difficult.*'yes'"):
        parse_voc_xml(p, ["cat"])


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG that declares w×h 1-bit pixels; Pillow's bomb check fires on the header, before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_png(tmp_path):
    p = tmp_path / "bomb.png"
    _png_header_only(p, 20000, 20000)  # 400 megapixels in 60 bytes
    assert p.stat().st_size < 200
    with pytest.raises(DataError, match=r"bomb\.png.*400.*megapixel"):
        read_image(p)


def test_nan_in_lut_json(tmp_path):
    p = tmp_path / "t.lut.json"
    t = LatencyTable(backend="torch", threads=1, imgsz=32, estimator="p10", fingerprint={}, versions={},
                     protocol={}, entries={"k": Entry("Conv", 0.1, 0.1, 0.0, 0.1, 0.1, 40)})
    t.save(p)
    p.write_text(p.read_text().replace('"estimate_ms": 0.1', '"estimate_ms": NaN'))
    with pytest.raises(TableError, match="NaN"):
        LatencyTable.load(p)


def test_report_out_is_a_folder(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "dir").mkdir()
    line = one_line(capsys, "report", str(tmp_path / "runs"), "--out", str(tmp_path / "dir"))
    assert "is a folder" in line


def test_profile_out_is_a_file_checked_before_timing(tmp_path, capsys, monkeypatch):
    f = tmp_path / "file.txt"
    f.write_text("x")
    monkeypatch.setattr("latlab.commands.profiling.profile_model",
                        lambda *a, **k: pytest.fail("timed before checking --out"))
    assert "existing file" in one_line(capsys, "profile", "yolov5n", "--budget", "0.1", "--out", str(f))


def test_lut_build_out_is_a_folder(tmp_path, capsys):
    out = tmp_path / "dir"
    out.mkdir()
    assert "is a folder" in one_line(capsys, "lut", "build", "--out", str(out), "--limit", "1")
    assert list(tmp_path.iterdir()) == [out] and not any(out.iterdir())


def test_space_expansion_inf(tmp_path):
    raw = read_yaml(DEFAULT_SPACE)
    raw["stages"][2]["expansion"] = [float("inf")]
    with pytest.raises(ConfigError, match=r"P5\.expansion"):
        load_space(raw)


def test_every_latlab_error_is_one_line_in_one_place(capsys, monkeypatch):
    def boom(*a, **k):
        raise LatlabError("first line\nsecond line " + "y" * 5000)

    monkeypatch.setattr("latlab.commands.models.build_model", boom)
    line = one_line(capsys, "build", "yolov5n")
    assert line.startswith("error: first line second line") and len(line) < 1100
    assert json.dumps(line)  # printable
