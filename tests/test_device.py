"""Training devices: the device descriptor, early one-line errors, device-independent checkpoints, the
per-device timing lock, and (``cuda``-marked, skipped without a GPU) AMP training, val and a search on CUDA."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest
import torch

from latlab.cli import main
from latlab.detection.checkpoint import load_checkpoint, save_checkpoint
from latlab.detection.data import load_dataset
from latlab.detection.device import parse_device, parse_devices, split_devices
from latlab.detection.evaluate import evaluate_checkpoint
from latlab.detection.train import train
from latlab.errors import DeviceError
from latlab.search.objectives import TimingLock
from latlab.search.storage import load_search_study

HAS_CUDA = torch.cuda.is_available()
TINY = {  # a five-conv detector: trains and evaluates in a moment (the data sets its classes)
    "nc": 1, "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]],
                 [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]]],
    "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]],
}
HAS_MPS = torch.backends.mps.is_available()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_dataset("builtin", imgsz=64, n_train=8, n_val=4, seed=3, root=tmp_path_factory.mktemp("d"))


@pytest.fixture
def one_gpu(monkeypatch):
    """This host, pretending to have one CUDA GPU (only the device count is looked at before training)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_cpu_is_full_precision_unless_bf16_is_asked():
    d = parse_device("cpu")
    assert (d.name, d.amp, d.amp_dtype, d.needs_scaler) == ("cpu", "off", None, False)
    b = parse_device("cpu", "bf16")
    assert b.amp_dtype == torch.bfloat16 and not b.needs_scaler
    with b.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_cuda_defaults_to_fp16_with_a_scaler_and_indexes_canonically(one_gpu):
    d = parse_device("cuda")
    assert (d.name, d.index, d.amp, d.amp_dtype, d.needs_scaler) == ("cuda:0", 0, "fp16", torch.float16, True)
    assert d.memory_format == torch.channels_last
    assert parse_device("cuda:0", "off").amp_dtype is None


def test_device_lists_repeat_the_kind_for_bare_indices():
    assert split_devices("cuda:0,1, 2") == ["cuda:0", "cuda:1", "cuda:2"]
    assert split_devices("cpu") == ["cpu"]
    assert [d.name for d in parse_devices("cpu,cpu")] == ["cpu", "cpu"]


@pytest.mark.skipif(HAS_CUDA, reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(capsys):
    with pytest.raises(DeviceError, match=r"--train-device cuda: no CUDA GPU is available"):
        parse_devices("cuda", option="--train-device")
    assert main(["search", "run", "--mode", "pareto", "--trials", "1", "--train-device", "cuda"]) == 2
    assert main(["train", "yolov5n", "--device", "cuda", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --train-device cuda: no CUDA GPU is available (torch.cuda.is_available() is False)",
                   "error: --device cuda: no CUDA GPU is available (torch.cuda.is_available() is False)"]


def test_a_gpu_index_past_the_hosts_gpus_is_a_one_line_error(one_gpu, capsys):
    with pytest.raises(DeviceError, match=r"cuda:7: this host has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        parse_device("cuda:7")
    assert main(["search", "run", "--mode", "pareto", "--trials", "1", "--train-device", "cuda:0,7"]) == 2
    assert main(["val", "yolov5n", "--weights", "none.pt", "--device", "cuda:7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --train-device cuda:7: this host has 1 CUDA device(s) (cuda:0 to cuda:0)",
                   "error: --device cuda:7: this host has 1 CUDA device(s) (cuda:0 to cuda:0)"]


@pytest.mark.skipif(HAS_MPS, reason="checks the error raised without MPS")
def test_mps_without_mps_and_unknown_devices_are_one_line_errors(capsys):
    with pytest.raises(DeviceError, match="no Apple MPS device is available"):
        parse_device("mps")
    for bad in ("gpu", "cuda:x", "cpu:1"):
        with pytest.raises(DeviceError, match="expected cpu, cuda, cuda:N or mps"):
            parse_device(bad)
    with pytest.raises(DeviceError, match="--amp fp16 is not supported on cpu"):
        parse_device("cpu", "fp16")
    assert main(["search", "run", "--mode", "pareto", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers 0: expected at least 1 worker process"


def test_checkpoints_hold_contiguous_cpu_tensors(tmp_path):
    w = torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": w}, "history": [{"x": torch.tensor(1.0)}]})
    back = load_checkpoint(path)
    assert back["model"]["w"].is_contiguous() and torch.equal(back["model"]["w"], w)
    assert back["history"][0]["x"].device.type == "cpu"


def test_a_checkpoint_reloads_with_map_location_and_gives_the_trainers_map(tiny, tmp_path):
    r = train(TINY, data=tiny, epochs=1, imgsz=64, batch=4, out_dir=tmp_path / "run", progress=False,
              device="cpu")
    assert r.device == "cpu" and r.amp == "off"
    ckpt = load_checkpoint(r.last)
    assert ckpt["device"] == "cpu"
    assert all(v.device.type == "cpu" for v in ckpt["ema"].values())
    m = evaluate_checkpoint(TINY, r.last, data=tiny, imgsz=64, device="cpu")
    assert m["map"] == pytest.approx(r.map, abs=1e-9)


def test_bf16_autocast_trains_on_the_cpu_when_asked(tiny, tmp_path):
    r = train(TINY, data=tiny, epochs=1, imgsz=64, batch=4, out_dir=tmp_path / "bf16", progress=False,
              amp="bf16", augment=False)
    assert r.amp == "bf16" and r.history["box_loss"].notna().all()
    assert all(p.dtype == torch.float32 for p in r.model.parameters())  # autocast leaves the weights fp32


def test_training_on_a_device_holds_its_lock_shared_and_timing_waits(tmp_path):
    lock = TimingLock(tmp_path / "t.lock")
    with lock.training(), open(lock.path, "a+") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)  # a second training may overlap
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # timing must wait


def test_each_gpu_has_its_own_timing_lock_file(one_gpu, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"uuid": f"GPU-{i}"})())
    paths = {TimingLock(tmp_path / "t.lock", device=d).path.name for d in ("cpu", "cuda", "cuda:0", "cuda:1")}
    assert paths == {"t.lock", "t-cuda-GPU-0.lock", "t-cuda-GPU-1.lock"}


# ------------------------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_amp_training_on_cuda_then_val_on_cuda_and_cpu(tmp_path):
    data = load_dataset("builtin", imgsz=160, n_train=64, n_val=16, root=tmp_path / "data")
    r = train("yolov5n", data=data, epochs=1, imgsz=160, batch=16, out_dir=tmp_path / "run", progress=False,
              device="cuda")
    assert r.device == "cuda:0" and r.amp == "fp16" and r.images_per_s > 0
    assert next(r.model.parameters()).device.type == "cuda"
    on_cuda = evaluate_checkpoint("yolov5n", r.last, data=data, imgsz=160, device="cuda", amp="off")
    on_cpu = evaluate_checkpoint("yolov5n", r.last, data=data, imgsz=160, device="cpu")  # CUDA → CPU
    assert on_cuda["map"] == pytest.approx(on_cpu["map"], abs=0.02)
    cli = subprocess.run([sys.executable, "-m", "latlab.cli", "val", "yolov5n", "--weights", str(r.last),
                          "--device", "cuda"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_a_cpu_checkpoint_resumes_on_cuda(tiny, tmp_path):
    r = train("yolov5n", data=tiny, epochs=1, imgsz=64, batch=4, out_dir=tmp_path / "run", progress=False)
    again = train("yolov5n", data=tiny, epochs=2, imgsz=64, batch=4, out_dir=tmp_path / "run", progress=False,
                  resume=True, device="cuda")  # CPU → CUDA: weights and optimizer state move onto the GPU
    assert again.epochs == 2 and again.device == "cuda:0" and r.device == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_two_trial_search_trains_on_cuda(tmp_path, tiny_data):
    args = [sys.executable, "-m", "latlab.cli", "search", "run", "--mode", "pareto", "--trials", "2",
            "--baselines", "", "--imgsz", "64", "--epochs", "1", "--batch", "8", "--data", str(tiny_data),
            "--train-device", "cuda", "--study", "gpu"]
    run = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "LATLAB_TIMING_LOCK": str(tmp_path / "t.lock")})
    assert run.returncode == 0, run.stdout + run.stderr
    study, _ = load_search_study("gpu", None, tmp_path / "results")
    done = [t for t in study.get_trials() if t.state.is_finished()]
    assert len(done) == 2 and {t.user_attrs["train_device"] for t in done} == {"cuda:0"}
    assert study.user_attrs["latlab.train_devices"] == ["cuda:0"]
