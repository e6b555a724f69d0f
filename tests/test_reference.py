"""Reference set and resumable reference trainings (latlab.search.reference), with fake trainers."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from test_fidelity_run import tiny_space

from latlab.errors import ConfigError
from latlab.search import reference as R
from latlab.search.space import arch_hash


def _params_latency(models, imgsz):
    """A fake, deterministic 'latency': the parameter count in millions."""
    return {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in models.items()}


@pytest.fixture(scope="module")
def ref_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "reference_test.yaml"
    ref = R.build_reference_set(tiny_space(), n=3, seed=0, imgsz=64, pool_factor=2, out=out, measure=_params_latency)
    return ref, out


def test_build_reference_set_writes_stratified_versioned_yaml(ref_set):
    ref, out = ref_set
    doc = yaml.safe_load(out.read_text())
    assert doc["version"] == R.SET_VERSION and doc["n"] == 3 and doc["pool"] == 6
    roles = [a["role"] for a in doc["architectures"]]
    assert roles == ["sampled"] * 3 + ["seed"] * 3
    assert [a["name"] for a in doc["architectures"][3:]] == list(R.SEED_DETECTORS)
    for a in doc["architectures"]:
        assert arch_hash(a["cfg"]) == a["arch_hash"] and a["cfg"]["nc"] == doc["nc"]
    lat = [a["latency_ms_at_build"] for a in doc["architectures"][:3]]
    assert lat == sorted(lat)
    loaded = R.load_reference_set(out)
    assert loaded.names() == ref.names()
    again = R.build_reference_set(tiny_space(), n=3, seed=0, imgsz=64, pool_factor=2, measure=_params_latency, seeds=())
    assert [a.arch_hash for a in again.archs] == [a.arch_hash for a in ref.archs[:3]]


def test_stratified_pick_one_per_bin():
    import numpy as np

    lat = [5.0, 1.0, 8.0, 2.0, 7.0, 3.0, 4.0, 6.0]
    picked = R.stratified_pick(lat, 4, np.random.default_rng(0))
    bins = [{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}, {7.0, 8.0}]
    assert [lat[i] in b for i, b in zip(picked, bins, strict=True)] == [True] * 4
    with pytest.raises(ConfigError):
        R.stratified_pick(lat, 9, np.random.default_rng(0))


def test_load_reference_set_rejects_bad_files(tmp_path, ref_set):
    _, out = ref_set
    doc = yaml.safe_load(out.read_text())
    doc["architectures"][0]["arch_hash"] = "0" * 16
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="does not hash"):
        R.load_reference_set(bad)
    doc["version"] = 99
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="version"):
        R.load_reference_set(bad)


class FakeTrainer:
    """Records calls; mAP is a function of the arch and seed; raises after ``fail_after`` calls."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[tuple[str, int]] = []
        self.fail_after = fail_after

    def __call__(self, cfg, seed, protocol):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((arch_hash(cfg), seed))
        return {"map": 0.1 + 0.01 * len(cfg["backbone"]) + 0.001 * seed, "map50": 0.2, "epochs": protocol.epochs,
                "train_s": 1.0}


PROTO = R.ReferenceProtocol(epochs=2, n_train=8, n_val=4)


def test_train_reference_resumes_after_kill_without_redoing(tmp_path, ref_set):
    _, set_path = ref_set
    out = tmp_path / "ref.csv"
    first = FakeTrainer(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        R.train_reference(set_path, PROTO, out, trainer=first)
    assert len(pd.read_csv(out)) == 2
    second = FakeTrainer()
    run = R.train_reference(set_path, PROTO, out, trainer=second)
    assert run.done_before == 2 and run.remaining == 0 and len(run.trained) == 10
    assert not set(first.calls) & set(second.calls)
    df = pd.read_csv(out)
    assert len(df) == 12 and list(df.columns) == list(R.RESULT_COLUMNS)
    assert not df.duplicated(["arch_hash", "seed"]).any()
    third = FakeTrainer()
    assert R.train_reference(set_path, PROTO, out, trainer=third).trained == [] and third.calls == []
    assert json.loads(R.sidecar_path(out).read_text())["protocol"] == PROTO.to_dict()
    assert R.read_protocol(out) == PROTO


def test_truncated_last_line_is_repaired(tmp_path, ref_set):
    _, set_path = ref_set
    out = tmp_path / "ref.csv"
    with pytest.raises(KeyboardInterrupt):
        R.train_reference(set_path, PROTO, out, trainer=FakeTrainer(fail_after=3))
    text = out.read_text()
    out.write_text(text[:-7])  # killed while writing the third row
    assert len(R.reference_table(out)) >= 1  # reading tolerates the torn line
    trainer = FakeTrainer()
    run = R.train_reference(set_path, PROTO, out, trainer=trainer)
    assert run.repaired and run.done_before == 2 and len(trainer.calls) == 10
    df = pd.read_csv(out)
    assert len(df) == 12 and not df.duplicated(["arch_hash", "seed"]).any()


def test_other_protocol_is_refused(tmp_path, ref_set):
    _, set_path = ref_set
    out = tmp_path / "ref.csv"
    R.train_reference(set_path, PROTO, out, trainer=FakeTrainer(), shard=(0, 6))
    with pytest.raises(ConfigError, match="protocol"):
        R.train_reference(set_path, R.ReferenceProtocol(epochs=3, n_train=8, n_val=4), out, trainer=FakeTrainer())


def test_shards_split_pairs_disjointly(tmp_path, ref_set):
    _, set_path = ref_set
    out = tmp_path / "ref.csv"
    a, b = FakeTrainer(), FakeTrainer()
    R.train_reference(set_path, PROTO, out, trainer=a, shard=(0, 2))
    R.train_reference(set_path, PROTO, out, trainer=b, shard=(1, 2))
    assert len(a.calls) == len(b.calls) == 6 and not set(a.calls) & set(b.calls)
    assert len(set(a.calls) | set(b.calls)) == 12
    assert R.parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(ConfigError):
            R.parse_shard(bad)


def test_reference_table_and_data_separation(tmp_path):
    out = tmp_path / "ref.csv"
    rows = [("a", 0, 0.30), ("a", 1, 0.32), ("b", 0, 0.20), ("b", 1, 0.24), ("c", 0, 0.10), ("c", 1, 0.10)]
    pd.DataFrame([{"name": n, "arch_hash": f"h{n}", "role": "sampled", "seed": s, "map": m, "map50": 0.0,
                   "epochs": 1, "train_s": 1.0, "cpu_s": 1.0} for n, s, m in rows]).to_csv(out, index=False)
    with open(out, "a") as f:  # two shards racing on a new file could leave a second header line
        f.write(",".join(R.RESULT_COLUMNS) + "\n")
    assert len(R.finished_pairs(out)) == 6
    t = R.reference_table(out)
    assert list(t["name"]) == ["a", "b", "c"]
    assert t["map_mean"].tolist() == pytest.approx([0.31, 0.22, 0.10])
    assert t["map_seed1"].tolist() == pytest.approx([0.32, 0.24, 0.10])
    sep = R.data_separation(t)
    # means 0.31, 0.22, 0.10: range 0.21; sample std = sqrt(((0.09)² + 0 + (0.12)² ... ) computed below
    m = [0.31, 0.22, 0.10]
    mu = sum(m) / 3
    assert sep.spread_range == pytest.approx(0.21)
    assert sep.spread_std == pytest.approx(math.sqrt(sum((x - mu) ** 2 for x in m) / 2))
    # seed differences 0.02, 0.04, 0: pooled sd = sqrt(mean(d²/2)) = sqrt((0.0004 + 0.0016 + 0) / 2 / 3)
    assert sep.seed_sd == pytest.approx(math.sqrt(0.002 / 6))
    assert sep.range_ratio == pytest.approx(0.21 / math.sqrt(0.002 / 6))
    assert t.attrs["separation"]["seed_sd"] == pytest.approx(sep.seed_sd)
    with pytest.raises(ConfigError):
        R.reference_table(tmp_path / "missing.csv")
    header_only = tmp_path / "empty.csv"
    header_only.write_text(",".join(R.RESULT_COLUMNS) + "\n")
    assert R.reference_table(header_only).empty
    assert math.isnan(R.data_separation(R.reference_table(header_only)).seed_sd)


def test_protocol_preset_names_the_data_and_its_classes():
    """shapes4-easy has four classes (disc, triangle, plus, bar); a protocol stored before presets existed
    (no 'preset' key, like reference_v1.json) still loads and keeps the reference set's class count."""
    easy = R.ReferenceProtocol(imgsz=64, preset="shapes4-easy")
    assert easy.data_kwargs() == {"n_train": 2000, "n_val": 400, "preset": "shapes4-easy"}
    assert easy.nc(10) == 4
    old = R.ReferenceProtocol.from_dict({"imgsz": 128, "n_train": 1000, "n_val": 200, "epochs": 8, "seeds": [0, 1]})
    assert old.data_kwargs() == {"n_train": 1000, "n_val": 200}
    assert old.nc(10) == 10
    assert R.ReferenceProtocol.from_dict(easy.to_dict()) == easy
