"""Runners: numerical agreement between backends, thread settings, and clean errors for missing devices."""

from __future__ import annotations

import builtins

import pytest
import torch
from torch import nn

from latlab.errors import DeviceError
from latlab.profiling import backends
from latlab.profiling.backends import CUDARunner, ORTRunner, TorchCPURunner, call_with, get_runner
from latlab.profiling.timer import Timer

HAS_CUDA = torch.cuda.is_available()


def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
    for m in net.modules():  # non-trivial BN statistics so eval mode matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


class Cat(nn.Module):
    def forward(self, xs):
        return torch.cat(xs, 1)


def test_torch_cpu_runner_matches_eval_forward_and_leaves_model_alone():
    net, x = small_net().train(), torch.randn(2, 3, 32, 32)
    out = TorchCPURunner().prepare(net, x)()
    assert net.training  # the runner used a private eval-mode copy
    assert torch.allclose(out, net.eval()(x), atol=1e-6)


def test_channels_last_gives_the_same_numbers():
    net, x = small_net().eval(), torch.randn(1, 3, 32, 32)
    out = TorchCPURunner(channels_last=True).prepare(net, x)()
    assert torch.allclose(out, net(x), atol=1e-5)
    assert next(net.parameters()).is_contiguous()  # caller's weights keep their layout


def test_list_input_is_one_argument_and_tuple_is_spread():
    a, b = torch.ones(1, 2, 3, 3), torch.zeros(1, 1, 3, 3)
    assert TorchCPURunner().prepare(Cat(), [a, b])().shape == (1, 3, 3, 3)
    assert call_with(torch.add, (a, a)).sum() == 2 * a.sum()


def test_session_sets_and_restores_threads():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    runner = get_runner("torch", "cpu", threads=target)
    with runner.session():
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before


def test_onnxruntime_output_equals_torch():
    pytest.importorskip("onnxruntime")
    net, x = small_net().eval(), torch.randn(1, 3, 32, 32)
    runner = get_runner("onnxruntime", "cpu", threads=1)
    assert isinstance(runner, ORTRunner)
    out = runner.prepare(net, x)()
    assert len(out) == 1
    assert torch.allclose(torch.from_numpy(out[0]), net(x), atol=1e-4)
    so = runner.ort_session.get_session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1


def test_onnxruntime_runner_with_list_input():
    pytest.importorskip("onnxruntime")
    a, b = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    out = get_runner("onnxruntime").prepare(Cat(), [a, b])()
    assert torch.equal(torch.from_numpy(out[0]), torch.cat([a, b], 1))


def test_timer_on_onnxruntime_records_backend():
    pytest.importorskip("onnxruntime")
    m = Timer(small_net(), torch.randn(1, 3, 16, 16), backend="onnxruntime", threads=1).measure(
        min_time_s=0.0, max_time_s=0.2, min_runs=3, max_runs=5, check_busy=False)
    assert m.backend == "onnxruntime" and m.threads == 1 and m.n == 5


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DeviceError, match=r"pip install latlab\[onnx\]") as info:
        get_runner("onnxruntime", "cpu")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_device_error():
    with pytest.raises(DeviceError, match="--device cuda asked but no CUDA GPU is available"):
        get_runner("torch", "cuda")


def test_cuda_error_when_torch_reports_no_gpu(monkeypatch):
    monkeypatch.setattr(backends.torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        CUDARunner()


@pytest.mark.parametrize(("backend", "device", "msg"), [("tvm", "cpu", "unknown backend 'tvm'"),
                                                       ("torch", "tpu", "unknown device 'tpu'")])
def test_unknown_backend_or_device(backend, device, msg):
    with pytest.raises(DeviceError, match=msg):
        get_runner(backend, device)


def test_threads_must_be_positive():
    with pytest.raises(DeviceError, match="threads must be >= 1"):
        get_runner("torch", "cpu", threads=0)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_runner_matches_cpu_and_times_with_events():
    net, x = small_net().eval(), torch.randn(1, 3, 32, 32)
    runner = get_runner("torch", "cuda")
    fn = runner.prepare(net, x)
    with runner.session():
        assert torch.backends.cudnn.benchmark
        out = fn()
        ms = runner.time_call(fn)
    assert torch.allclose(out.cpu(), net(x), atol=1e-3)
    assert ms > 0
    assert next(net.parameters()).device.type == "cpu"
