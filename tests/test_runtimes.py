"""The runtimes users ship, on a tiny conv net at 64 px, against eager torch as the reference.

Tolerances (stated here, checked below): FP32 backends within 1e-4 relative (max |out - eager| / max |eager|);
INT8 backends give finite outputs whose cosine similarity with eager is above 0.9 (the mAP drop is measured
on a trained detector in the closing note, not here). Every result row records backend, precision, runtime
version and the conversion seconds apart from latency; a missing package is one line naming the extra; a
latency table is refused for any other backend or precision.
"""

from __future__ import annotations

import gc
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import latlab.detection  # noqa: F401  (registers the built-in images as the INT8 calibration source)
from latlab.cli import main
from latlab.errors import DeviceError, TableError
from latlab.lut.predict import LatencyPredictor
from latlab.lut.table import LatencyTable
from latlab.profiling.backends import get_backend, get_runner
from latlab.profiling.compare import run_interleaved
from latlab.profiling.runtimes import onnxruntime_int8
from latlab.profiling.runtimes.calibration import calibration_for

FP32_REL_TOL = 1e-4
INT8_MIN_COSINE = 0.9


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 6, 1)).eval()


def _x() -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _first_output(out: object) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        return out.detach().numpy()
    if isinstance(out, list | tuple):
        return np.asarray(out[0])
    return np.asarray(next(iter(out.values())))  # OpenVINO's result dict


def _run(backend: str, tmp_path=None) -> tuple[np.ndarray, np.ndarray, float]:
    runner = get_runner(backend)
    fn = runner.prepare(_net(), _x())
    with runner.session():
        out = _first_output(fn())
    with torch.inference_mode():
        ref = _net()(_x()).numpy()
    return out, ref, runner.compile_seconds(fn)


def _needs(*modules: str) -> None:
    for m in modules:
        pytest.importorskip(m)


@pytest.mark.parametrize("backend,modules", [("onnxruntime", ("onnxruntime",)), ("openvino", ("openvino",)),
                                             pytest.param("executorch", ("executorch",), marks=pytest.mark.slow),
                                             pytest.param("torch-compile", (), marks=pytest.mark.slow)])
def test_fp32_backends_match_eager_within_1e4_relative(backend, modules):
    _needs(*modules)
    out, ref, _ = _run(backend)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() / np.abs(ref).max() <= FP32_REL_TOL


@pytest.mark.parametrize("backend,modules", [("onnxruntime-int8", ("onnxruntime",)),
                                             ("openvino-int8", ("openvino", "nncf")),
                                             pytest.param("executorch-int8", ("executorch", "torchao"),
                                                          marks=pytest.mark.slow)])
def test_int8_backends_are_finite_and_close_to_eager(backend, modules, tmp_path, monkeypatch):
    _needs(*modules)
    monkeypatch.setattr(onnxruntime_int8, "CACHE_DIR", tmp_path)
    out, ref, seconds = _run(backend)
    assert get_backend(backend).precision == "int8"
    assert np.isfinite(out).all() and out.shape == ref.shape
    cosine = float(out.ravel() @ ref.ravel() / (np.linalg.norm(out) * np.linalg.norm(ref)))
    assert cosine > INT8_MIN_COSINE
    assert seconds >= 0


def test_int8_calibrates_on_builtin_images_and_caches_the_quantized_model(tmp_path, monkeypatch):
    _needs("onnxruntime")
    calibration = calibration_for(_x())
    assert calibration.name.startswith("builtin-64-")
    image = calibration.batches[0][0]
    assert image.shape == (1, 3, 64, 64) and image.min() >= 0.0 and image.max() <= 1.0
    assert calibration_for(torch.rand(1, 8, 16, 16)).name.startswith("perturbed-")  # a block's input
    monkeypatch.setattr(onnxruntime_int8, "CACHE_DIR", tmp_path)
    first = get_runner("onnxruntime-int8")
    first.prepare(_net(), _x())
    second = get_runner("onnxruntime-int8")
    second.prepare(_net(), _x())
    assert first.model_path == second.model_path and first.model_path.parent == tmp_path
    assert len(list(tmp_path.glob("*.onnx"))) == 1


def test_int8_convolutions_run_as_int8_kernels_after_ort_optimisation(tmp_path, monkeypatch):
    """ONNX Runtime's own graph optimiser must turn the QDQ convolutions into ``QLinearConv`` (int8 kernels);
    S8S8 on x86 leaves them FP32 ``Conv`` between Q/DQ pairs (slower than the FP32 graph)."""
    _needs("onnxruntime", "onnx")
    import onnx  # optional dependency (the onnx extra)
    import onnxruntime as ort  # optional dependency (the onnx extra)

    assert onnxruntime_int8.activation_format("x86_64") == "u8s8"
    assert onnxruntime_int8.activation_format("aarch64") == "s8s8"
    monkeypatch.setattr(onnxruntime_int8, "CACHE_DIR", tmp_path)
    runner = get_runner("onnxruntime-int8")
    runner.prepare(_net(), _x())
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(runner.model_path), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    if onnxruntime_int8.activation_format() == "u8s8":
        assert ops.count("QLinearConv") == 3 and "Conv" not in ops

def test_rows_record_backend_precision_runtime_version_and_compile_seconds(tmp_path, monkeypatch):
    _needs("onnxruntime")
    monkeypatch.setattr(onnxruntime_int8, "CACHE_DIR", tmp_path)
    rows = {}
    for backend in ("torch", "onnxruntime-int8"):
        run = run_interleaved({"net": _net()}, _x(), rounds=3, backend=backend, progress=False,
                              check_busy=False, speed_reference=False)
        rows[backend] = run.measurements["net"].to_row()
    assert rows["torch"]["precision"] == "fp32" and math.isnan(rows["torch"]["compile_s"])
    assert rows["torch"]["runtime_version"] == f"torch {torch.__version__}"
    int8 = rows["onnxruntime-int8"]
    assert int8["backend"] == "onnxruntime-int8" and int8["precision"] == "int8"
    assert int8["runtime_version"].startswith("onnxruntime 1.") and int8["compile_s"] >= 0


@pytest.mark.parametrize("backend,module,extra", [("openvino", "openvino", "openvino"),
                                                  ("openvino-int8", "nncf", "openvino"),
                                                  ("onnxruntime-int8", "onnxruntime", "onnx"),
                                                  ("executorch", "executorch", "executorch"),
                                                  ("executorch-int8", "torchao", "executorch")])
def test_missing_package_is_one_line_naming_the_extra(backend, module, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import of that module now fails like a missing one
    with pytest.raises(DeviceError) as info:
        get_runner(backend)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"--backend {backend} needs the {extra} extra")
    assert f"pip install latlab[{extra}]" in msg and f"{module} is not installed" in msg
    assert main(["profile", "yolov5n", "--backend", backend, "--imgsz", "32"]) != 0
    assert f"pip install latlab[{extra}]" in capsys.readouterr().err


def _table(backend: str, precision: str | None) -> LatencyTable:
    return LatencyTable(backend=backend, precision=precision, threads=1, imgsz=32, estimator="p10",
                        fingerprint={"cpu_model": "Test CPU", "machine": "x86_64", "logical_cores": 2},
                        versions={}, protocol={})


BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8", "torch-compile", "executorch",
            "executorch-int8")


@pytest.mark.parametrize("built", BACKENDS)
@pytest.mark.parametrize("asked", BACKENDS)
def test_a_table_predicts_only_for_its_own_backend(built, asked):
    table = _table(built, get_backend(built).precision)
    if built == asked:
        LatencyPredictor(table, backend=asked)
        return
    with pytest.raises(TableError) as info:
        LatencyPredictor(table, backend=asked)
    msg = str(info.value)
    assert "\n" not in msg and f"measured with backend '{built}'" in msg and f"--backend {asked}" in msg


def test_a_table_of_another_precision_is_refused_and_old_tables_read_as_fp32(tmp_path):
    relabelled = _table("onnxruntime", "int8")  # same backend name, other precision: refused by precision
    with pytest.raises(TableError, match="timed in int8, but fp32 was requested"):
        LatencyPredictor(relabelled, backend="onnxruntime")
    old = _table("torch", None)  # written before tables recorded a precision
    doc = old.to_dict()
    assert "precision" not in doc
    back = LatencyTable.load(old.save(tmp_path / "old.lut.json"))
    assert back.timed_precision == "fp32" and back.checksum == old.checksum
    LatencyPredictor(back, backend="torch")
    new = _table("onnxruntime-int8", "int8")
    assert LatencyTable.load(new.save(tmp_path / "new.lut.json")).precision == "int8"


@pytest.mark.slow
def test_executorch_call_outlives_garbage_collection_of_its_program():
    _needs("executorch")
    fn = get_runner("executorch").prepare(_net(), _x())
    gc.collect()  # the loaded Program must stay alive with the call: its method runs on the program's memory
    out = _first_output(fn())
    with torch.inference_mode():
        ref = _net()(_x()).numpy()
    assert out.shape == ref.shape and np.abs(out - ref).max() / np.abs(ref).max() <= FP32_REL_TOL
