"""Training loop: checkpoints, exact resume after SIGKILL, time budget, epoch hook, errors, CLI."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from latlab.detection.checkpoint import load_checkpoint
from latlab.detection.data import load_dataset
from latlab.detection.evaluate import evaluate_checkpoint
from latlab.detection.train import HISTORY_COLUMNS, lr_factor, train
from latlab.errors import ConfigError, DataError
from latlab.ops.builder import build_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_dataset("builtin", imgsz=64, n_train=8, n_val=4, seed=5, root=tmp_path_factory.mktemp("d"))


def model10():
    torch.manual_seed(0)
    return build_model("yolov5n", nc=10)


def test_train_writes_run_folder_and_checkpoints(tiny, tmp_path):
    r = train(model10(), data=tiny, epochs=2, imgsz=64, batch=4, out_dir=tmp_path / "run", progress=False)
    assert r.epochs == 2 and r.stopped_by == "epochs"
    assert list(r.history.columns) == HISTORY_COLUMNS
    assert r.history["epoch"].tolist() == [0, 1]
    assert r.images_seen == 16
    for f in ("metrics.csv", "per_class.csv", "final.json", "meta.json", "last.pt", "best.pt"):
        assert (tmp_path / "run" / f).exists(), f
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["epochs"] == 2 and 0 <= final["map50"] <= 1
    ckpt = load_checkpoint(r.last)  # weights_only=True
    assert ckpt["epoch"] == 1 and ckpt["nc"] == 10 and len(ckpt["history"]) == 2
    m = evaluate_checkpoint("yolov5n", r.last, data=tiny, imgsz=64)
    assert m["map50"] == pytest.approx(r.map50)


def test_epoch_hook_stops_and_time_budget(tiny, tmp_path):
    seen = []
    r = train(model10(), data=tiny, epochs=5, imgsz=64, batch=4, out_dir=tmp_path / "a", progress=False,
              on_epoch_end=lambda e, m: seen.append((e, m["map50"])) or e == 1)
    assert r.stopped_by == "callback" and r.epochs == 2 and [e for e, _ in seen] == [0, 1]
    r = train(model10(), data=tiny, minutes=0.01, imgsz=64, batch=4, out_dir=tmp_path / "b", progress=False)
    assert r.stopped_by == "minutes" and r.epochs >= 1


def test_lr_schedules():
    assert lr_factor(0.0, 0.01, "linear") == 1.0 and lr_factor(1.0, 0.01, "linear") == pytest.approx(0.01)
    assert lr_factor(0.5, 0.01, "cosine") == pytest.approx(0.505)
    with pytest.raises(ConfigError):
        lr_factor(0.5, 0.01, "step")


def test_bad_inputs_raise_clear_errors(tiny, tmp_path):
    with pytest.raises(ConfigError, match="nc=3 but the data has nc=10"):
        train(build_model("yolov5n", nc=3), data=tiny, epochs=1, imgsz=64, out_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="data path not found"):
        train("yolov5n", data=tmp_path / "missing.yaml", epochs=1, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train("yolov5n", data=tiny, resume=True, out_dir=tmp_path / "none", progress=False)
    with pytest.raises(ConfigError, match="not both"):
        train("yolov5n", data=tiny, epochs=1, minutes=1, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="multiple of the model's max stride"):
        train(model10(), data=tiny, epochs=1, imgsz=70, out_dir=tmp_path, progress=False)
    r = train(model10(), data=tiny, epochs=1, imgsz=64, batch=8, out_dir=tmp_path / "r", progress=False)
    other = load_dataset("builtin", imgsz=64, n_train=2, n_val=2, seed=5, root=tmp_path)
    other.names = other.names[:4]
    with pytest.raises(ConfigError, match="nc=10 but data"):
        evaluate_checkpoint("yolov5n", r.last, data=other, imgsz=64)


SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
from torch import nn
from latlab.detection.data import load_dataset
from latlab.detection.train import train
from latlab.ops.builder import build_model

class Slow(nn.Module):
    # The zoo model, slowed down per training step so the test can kill it mid-epoch.
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = build_model("yolov5n", nc=10)
        self.detect = self.net.detect

    def forward(self, x):
        if self.training:
            time.sleep(0.08)
        return self.net(x)

data = load_dataset("builtin", imgsz=64, n_train=24, n_val=4, seed=7, root=sys.argv[2])
train(Slow(), data=data, epochs=4, imgsz=64, batch=4, out_dir=sys.argv[1], resume=sys.argv[3] == "1",
      progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    data_root = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(out, resume):
        return subprocess.Popen([sys.executable, str(script), str(out), str(data_root), "1" if resume else "0"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    ref = run(tmp_path / "ref", False)
    out_ref, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out_ref.decode()[-2000:]

    killed = tmp_path / "killed"
    proc = run(killed, False)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until epoch 1 (the 2nd) is checkpointed, then kill inside epoch 2
        if (killed / "last.pt").exists() and load_checkpoint(killed / "last.pt")["epoch"] >= 1:
            break
        assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
        time.sleep(0.05)
    time.sleep(0.25)  # 6 steps of >= 0.08 s per epoch: this lands inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(killed / "last.pt")
    assert ckpt["epoch"] < 3  # killed before the end
    assert not (killed / "final.json").exists()

    res = run(killed, True)
    out_res, _ = res.communicate(timeout=600)
    assert res.returncode == 0, out_res.decode()[-2000:]
    hist = pd.read_csv(killed / "metrics.csv")
    assert hist["epoch"].tolist() == [0, 1, 2, 3]
    assert json.loads((killed / "final.json").read_text())["epochs"] == 4
    # Exact continuation: same weights and EMA as the run that was never interrupted.
    a, b = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(killed / "last.pt")
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    ref_hist = pd.read_csv(tmp_path / "ref" / "metrics.csv")
    pd.testing.assert_series_equal(ref_hist["box_loss"], hist["box_loss"])


def test_cli_data_make_train_val(tmp_path, monkeypatch):
    from latlab.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "make", "--imgsz", "64", "--n-train", "4", "--n-val", "2"]) == 0
    folder = next((tmp_path / "results" / "data").iterdir())
    assert main(["train", "yolov5n", "--data", str(folder), "--epochs", "1", "--imgsz", "64", "--batch", "4",
                 "--name", "cli"]) == 0
    run = tmp_path / "results" / "train" / "cli"
    assert (run / "final.json").exists() and (run / "metrics.csv").exists()
    assert main(["val", "yolov5n", "--weights", str(run / "last.pt"), "--data", str(folder), "--imgsz", "64"]) == 0
    assert main(["train", "yolov5n", "--data", str(tmp_path / "nope"), "--epochs", "1"]) == 2


def test_train_leaves_the_thread_count_as_it_found_it(tiny, tmp_path):
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    seen = []
    train(model10(), data=tiny, epochs=1, imgsz=64, batch=8, out_dir=tmp_path / "t", progress=False,
          threads=other, on_epoch_end=lambda _e, _m: seen.append(torch.get_num_threads()))
    assert seen == [other] and torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="nc=3 but the data has nc=10"):  # raised while the count is set
        train(build_model("yolov5n", nc=3), data=tiny, epochs=1, imgsz=64, out_dir=tmp_path / "e",
              progress=False, threads=other)
    assert torch.get_num_threads() == before
