"""Bring your own model: ``count``, ``profile``, ``compare`` and ``lint`` take a ``package.module:factory``,
a TorchScript or ``torch.export`` archive and an ONNX file besides zoo names and YAMLs (latlab.ops.sources).

The reference numbers are worked out by hand for :class:`TinyNet` (conv 3→8 3×3, grouped conv 8→16 3×3
stride 2 groups 2, global mean, linear 16→10) at 32×32:
params  = (8·3·9 + 8) + (16·4·9 + 16) + (10·16 + 10) = 224 + 592 + 170 = 986
madds   = 32·32·8·27 + 16·16·16·36 + 10·16 = 221184 + 147456 + 160 = 368800 (bias excluded)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from latlab.cli import main
from latlab.errors import ConfigError, UnknownModelError
from latlab.ops.sources import OnnxGraph, as_model, form_of, resolve_model
from latlab.profiling.counter import count

PARAMS = 986
MADDS_32 = 221184 + 147456 + 160
MADDS_64 = 4 * (221184 + 147456) + 160
FACTORY = "test_byom:make_tiny"  # this module, importable by name under pytest


class TinyNet(nn.Module):
    """A tiny classifier with a grouped, strided conv and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def make_tiny() -> nn.Module:
    return TinyNet()


def not_a_module() -> list[int]:
    return [1, 2]


def broken_factory() -> nn.Module:
    raise ValueError("no weights here")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A TorchScript, a torch.export and two ONNX files (fixed 32×32 and dynamic size) of one TinyNet."""
    onnx = pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("byom")
    torch.manual_seed(0)
    model, x = TinyNet().eval(), torch.randn(1, 3, 32, 32)
    out = {"torchscript": folder / "tiny.pt", "export": folder / "tiny.pt2", "onnx": folder / "tiny.onnx",
           "onnx_dynamic": folder / "tiny_dyn.onnx"}
    torch.jit.save(torch.jit.trace(model, x), str(out["torchscript"]))
    torch.export.save(torch.export.export(model, (x,)), str(out["export"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(out["onnx"]), dynamo=False, input_names=["images"])
        torch.onnx.export(model, (x,), str(out["onnx_dynamic"]), dynamo=False, input_names=["images"],
                          dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}})
    onnx.checker.check_model(onnx.load(str(out["onnx"])))
    return out


def test_tiny_net_matches_the_hand_count():
    net = TinyNet()
    assert sum(p.numel() for p in net.parameters()) == PARAMS
    assert count(net, 32).totals["madds"] == MADDS_32


@pytest.mark.parametrize("form", ["factory", "torchscript", "export"])
def test_pytorch_forms_count_like_the_module(form, files):
    spec = FACTORY if form == "factory" else str(files[form])
    resolved = resolve_model(spec)
    assert resolved.form == {"export": "torch.export"}.get(form, form) and resolved.name == spec
    totals = count(spec, 32).totals
    assert totals["params"] == PARAMS and totals["madds"] == MADDS_32


def test_onnx_counted_from_the_graph(files, capsys):
    assert main(["count", str(files["onnx"]), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["form"] == "onnx" and payload["input_shape"] == [1, 3, 32, 32]
    assert payload["totals"] == {"params": PARAMS, "madds": MADDS_32}
    assert set(payload["unavailable"]) == {"flops", "mac_bytes", "act_elems", "yolo_gflops"}
    convs = [r for r in payload["by_layer"] if r["op_type"] == "Conv"]
    assert [r["madds"] for r in convs] == [221184, 147456] and [r["params"] for r in convs] == [224, 592]
    assert main(["count", str(files["onnx"]), "--by", "op"]) == 0
    out = capsys.readouterr().out
    assert "not available from an ONNX graph: flops, mac_bytes, act_elems, yolo_gflops" in " ".join(out.split())


def test_onnx_dynamic_size_takes_imgsz(files, capsys):
    assert main(["count", str(files["onnx_dynamic"]), "--imgsz", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == {"params": PARAMS, "madds": MADDS_64}
    assert main(["count", str(files["onnx_dynamic"])]) == 2
    assert "dynamic size on axis 2; pass --imgsz" in capsys.readouterr().err


@pytest.mark.parametrize("form", ["factory", "torchscript", "export", "onnx"])
def test_every_form_is_profiled(form, files, tmp_path, capsys):
    if form == "onnx":
        pytest.importorskip("onnxruntime")
    spec = FACTORY if form == "factory" else str(files[form])
    assert main(["profile", spec, "--imgsz", "32", "--budget", "0.2", "--json", "--out", str(tmp_path)]) == 0
    payload = json.loads(capsys.readouterr().out)
    row = payload["latency"][0]
    assert row["model"] == spec and row["estimate_ms"] > 0 and row["imgsz"] == 32
    assert payload["meta"]["backend"] == ("onnxruntime" if form == "onnx" else "torch")


def test_onnx_compared_with_a_factory_under_onnxruntime(files, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["compare", str(files["onnx"]), FACTORY, "--budget", "0.2", "--json", "--out", str(tmp_path)]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert [m["backend"] for m in models] == ["onnxruntime", "onnxruntime"]


def test_lint_takes_a_factory(capsys):
    assert main(["lint", FACTORY, "--imgsz", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_forms_are_recognised_by_their_spelling():
    assert [form_of(s).name for s in ("pkg.mod:make", "a.pt2", "A.ONNX", "w.pth", "m.ts", "yolov5n", "x.yaml")] == [
        "factory", "torch.export", "onnx", "torchscript", "torchscript", "config", "config"]


def _junk(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text("not a model\n")
    return str(path)


@pytest.mark.parametrize(("spec", "expected"), [
    ("no_such_pkg.models:make", "'no_such_pkg.models:make': module 'no_such_pkg.models' not found"),
    ("test_byom:missing", "'test_byom:missing': module 'test_byom' has no attribute 'missing'"),
    ("test_byom:PARAMS", "'test_byom:PARAMS': 'test_byom.PARAMS' is not callable (int)"),
    ("test_byom:not_a_module", "'test_byom:not_a_module': not_a_module() returned list, expected an nn.Module"),
    ("test_byom:broken_factory", "'test_byom:broken_factory': calling broken_factory() failed: ValueError: "
                                 "no weights here"),
    ("missing.onnx", "'missing.onnx': no such file (tried as an ONNX file)"),
    ("junk.onnx", "': not an ONNX file: "),
    ("junk.pt", "': not a TorchScript archive: "),
    ("junk.pt2", "': not a torch.export archive: "),
])
def test_bad_forms_give_one_line_errors(spec, expected, tmp_path, capsys):
    if spec.startswith("junk"):
        if spec.endswith(".onnx"):
            pytest.importorskip("onnx")
        spec = _junk(tmp_path, spec)
    assert main(["count", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in " ".join(err.split()) and err.startswith("error:") and spec in err
    with pytest.raises((ConfigError, UnknownModelError)):
        resolve_model(spec)


def test_onnx_refused_where_a_pytorch_model_is_needed(files, capsys):
    assert isinstance(resolve_model(str(files["onnx"])).model, OnnxGraph)
    with pytest.raises(ConfigError, match="is an ONNX graph: lint needs a PyTorch model"):
        as_model(str(files["onnx"]), "lint")
    assert main(["count", str(files["onnx"]), "--imgsz", "64"]) == 2
    assert "input size is fixed at 1x3x32x32; --imgsz 64 does not fit" in capsys.readouterr().err
    assert main(["profile", str(files["onnx"]), "--per-layer"]) == 2
    assert "--per-layer and --ops need a PyTorch model" in capsys.readouterr().err
