"""Adding a backend is one class: a toy backend registered in this test module only (eager torch under the
name "toy-eager") is accepted by name by profile, compare (library and CLI) and the search's measured latency,
and every row they write records it. Unknown names fail with one line listing the registered backends."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from rich.text import Text
from torch import nn

from latlab.cli import main
from latlab.commands.options import backend_help
from latlab.errors import DeviceError
from latlab.ops.sources import as_model
from latlab.profiling import backends
from latlab.profiling.backends import (
    TorchCPURunner,
    get_backend,
    get_runner,
    list_backends,
    register_backend,
    unregister_backend,
)
from latlab.profiling.layerwise import compare_models, profile_model
from latlab.search.objectives import MeasuredLatency, TimingLock

TOY = "toy-eager"
FAST = {"imgsz": 32, "budget_s": 0.2, "progress": False}


@pytest.fixture
def toy():
    """Register the toy backend for one test; it counts the models it prepared, so a test can tell that
    this runner (not the built-in torch one) did the timing."""

    @register_backend(TOY, devices=("cpu",), description="Eager torch under another name (test only).")
    class ToyEager(TorchCPURunner):
        prepared: ClassVar[list[str]] = []

        def prepare(self, model, example_input):
            ToyEager.prepared.append(type(model).__name__)
            return super().prepare(model, example_input)

    try:
        yield ToyEager
    finally:
        unregister_backend(TOY)


def test_registry_describes_the_toy_backend_and_forgets_it(toy):
    spec = get_backend(TOY)
    assert spec.runner is toy and spec.devices == ("cpu",) and not spec.per_layer
    assert TOY in backends.BACKENDS and TOY in [s.name for s in list_backends()]
    assert f"{TOY} (cpu): Eager torch under another name" in backend_help()
    runner = get_runner(TOY, "cpu", threads=1)
    assert isinstance(runner, toy) and runner.backend == TOY and runner.device == "cpu"
    unregister_backend(TOY)
    try:
        assert TOY not in backends.BACKENDS
        with pytest.raises(DeviceError, match=f"unknown backend '{TOY}'"):
            get_runner(TOY)
    finally:
        register_backend(TOY, devices=("cpu",), description="re-registered for the fixture")(toy)


def test_profile_records_the_toy_backend(toy):
    r = profile_model("yolov5n", backend=TOY, **FAST)
    assert r.end_to_end.backend == TOY
    assert r.latency["backend"].tolist() == [TOY] and r.meta()["backend"] == TOY
    assert type(as_model("yolov5n")[0]).__name__ in toy.prepared  # the toy runner prepared the model


def test_compare_library_and_cli_record_the_toy_backend(toy, tmp_path, capsys):
    c = compare_models("yolov5n", "yolov5n", backend=TOY, **FAST)
    assert c.a.backend == c.b.backend == TOY and c.to_row()["backend"] == TOY
    n_prepared = len(toy.prepared)
    assert n_prepared >= 2

    out = tmp_path / "cmp"
    rc = main(["compare", "yolov5n", "yolov5n", "--backend", TOY, "--imgsz", "32", "--budget", "0.2", "--json",
               "--out", str(out)])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["comparison"]["backend"] == TOY
    assert [m["backend"] for m in payload["models"]] == [TOY, TOY]
    assert json.loads((out / "meta.json").read_text())["backend"] == TOY
    assert len(toy.prepared) > n_prepared


def test_cli_profile_accepts_the_toy_backend(toy, tmp_path, capsys):
    rc = main(["profile", "yolov5n", "--backend", TOY, "--imgsz", "32", "--budget", "0.2", "--json",
               "--out", str(tmp_path / "p")])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["latency"][0]["backend"] == TOY


def test_search_measured_latency_uses_the_toy_backend(toy, tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    lat = MeasuredLatency(16, backend=TOY, min_rounds=3, max_time_s=0.2, lock=TimingLock(tmp_path / "lock"))
    est = lat(net)
    assert est.backend == TOY and est.attrs()["latency_backend"] == TOY
    assert est.estimate_ms > 0 and est.n >= 3
    assert "Sequential" in toy.prepared


def test_descriptor_limits_devices_and_per_layer(toy):
    with pytest.raises(DeviceError, match=f"--backend {TOY} does not run on --device cuda: it supports cpu"):
        get_runner(TOY, "cuda")
    with pytest.raises(DeviceError, match=r"do not support --backend toy-eager \(backends that do: torch\)"):
        profile_model("yolov5n", backend=TOY, per_layer=True, **FAST)


def test_registering_a_name_twice_is_an_error(toy):
    with pytest.raises(DeviceError, match=f"backend '{TOY}' is already registered"):
        register_backend(TOY, devices=("cpu",), description="again")(TorchCPURunner)


def test_unknown_backend_is_one_line_listing_the_registered_names(toy, capsys):
    with pytest.raises(DeviceError) as info:
        get_runner("tvm", "cpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == ("unknown backend 'tvm': expected one of torch, onnxruntime, executorch, executorch-int8, "
                   f"onnxruntime-int8, openvino, openvino-int8, torch-compile, {TOY}")
    with pytest.raises(DeviceError, match="unknown backend 'tvm'"):
        MeasuredLatency(16, backend="tvm")
    assert main(["profile", "yolov5n", "--backend", "tvm", "--imgsz", "32"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'tvm'" in err and TOY in err


def test_shared_options_name_every_registered_backend():
    text = Text.from_markup(backend_help()).plain  # as typer's rich help shows it
    for spec in list_backends():
        assert f"{spec.name} ({', '.join(spec.devices)}" in text and spec.description.rstrip(".") in text
    assert "pip install latlab[onnx]" in text
