"""Synthetic run folders with the columns latlab's jobs write, for the report tests and the browser test.

Every writer makes a folder the way the job does (``latlab.runs.RunWriter``: CSV tables + ``meta.json`` with
the real device fingerprint) and returns what the page should show (point counts), so tests compare the
figures against numbers fixed here, not read back from the report code. The tests at the bottom check the
loaders classify each folder by its ``meta["job"]`` and by its columns alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from latlab.report.loaders import discover, load_run
from latlab.runs import RunWriter

CATEGORIES = ("conv", "pointwise", "depthwise", "elementwise", "norm", "data_movement", "pooling")
MEAS = ("median_ms", "mean_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "n", "threads", "backend", "device")


def _measurement(est: float, rng: np.random.Generator) -> dict[str, object]:
    return {"median_ms": est * 1.05, "mean_ms": est * 1.08, "p10_ms": est, "p90_ms": est * 1.2,
            "iqr_ms": est * 0.1, "cv": 0.05, "n": 200, "threads": 1, "backend": "torch", "device": "cpu",
            "min_ms": est * 0.97, "estimator": "p10", "estimate_ms": est, "ci_low_ms": est * 0.98,
            "ci_high_ms": est * 1.03 + 0.01 * rng.random()}


@dataclass
class ProfileFixture:
    model: str
    n_layers: int
    groups_per_layer: dict[int, set[str]]


def write_count_run(root: Path, model: str = "tiny", imgsz: int = 64, n_layers: int = 6, seed: int = 0
                    ) -> tuple[Path, ProfileFixture]:
    """A ``count`` run: ops.csv (count table), by_layer.csv, crosscheck.csv, meta totals."""
    rng = np.random.default_rng(seed)
    rows = []
    groups: dict[int, set[str]] = {}
    for layer in range(n_layers):
        cats = CATEGORIES[: 3 + layer % 4]
        for j, cat in enumerate(cats):
            madds = int(rng.integers(1e5, 1e7)) if cat in ("conv", "pointwise", "depthwise") else 0
            flops = 2 * madds + int(rng.integers(1e3, 1e5))
            rows.append({"layer": layer, "module": f"layers.{layer}.m{j}", "op": f"op{j}", "category": cat,
                         "params": int(rng.integers(0, 5000)), "madds": madds, "flops": flops,
                         "mac_bytes": int(rng.integers(1e4, 1e6)), "act_elems": int(rng.integers(1e3, 1e5)),
                         "in_shapes": "1x16x32x32", "out_shape": "1x16x32x32"})
        groups[layer] = set()
        for cat in cats:
            groups[layer].add({"conv": "conv", "pointwise": "conv", "depthwise": "depthwise",
                               "elementwise": "element-wise", "norm": "element-wise",
                               "data_movement": "data movement", "pooling": "other"}[cat])
    ops = pd.DataFrame(rows)
    path = root / "count" / f"{model}-{imgsz}"
    w = RunWriter(path, "count")
    w.save_table(ops, "ops")
    by_layer = ops.groupby("layer", as_index=False)[["params", "madds", "flops", "mac_bytes"]].sum()
    w.save_table(by_layer, "by_layer")
    madds = float(ops["madds"].sum())
    cc = pd.DataFrame([
        {"counter": "latlab", "total": madds, "unit": "madds", "ratio_to_latlab_madds": 1.0, "reason": "convs"},
        {"counter": "fvcore", "total": madds * 1.02, "unit": "fvcore flops", "ratio_to_latlab_madds": 1.02,
         "reason": "conv + batch_norm"},
        {"counter": "thop", "total": madds * 1.04, "unit": "thop ops", "ratio_to_latlab_madds": 1.04,
         "reason": "module hooks"}])
    w.save_table(cc, "crosscheck")
    totals = {c: int(ops[c].sum()) for c in ("params", "madds", "flops", "mac_bytes", "act_elems")}
    w.write_meta(model=model, imgsz=imgsz, input_shape=[1, 3, imgsz, imgsz], dtype="float32",
                 meta_tensors=True, totals=totals, yolo_gflops=2 * madds * 1.04 / 1e9)
    return path, ProfileFixture(model, n_layers, groups)


def write_profile_run(root: Path, model: str = "tiny", imgsz: int = 64, n_layers: int = 6, seed: int = 1,
                      e2e_ms: float | None = None) -> Path:
    """A ``profile --per-layer --ops`` run: latency.csv, layers.csv, ops*.csv (profiler tables)."""
    rng = np.random.default_rng(seed)
    e2e = e2e_ms if e2e_ms is not None else float(rng.uniform(2, 8))
    path = root / "profile" / f"{model}-{imgsz}"
    w = RunWriter(path, "profile", threads=1)
    w.save_table(pd.DataFrame([{"model": model, "imgsz": imgsz, "batch": 1, **_measurement(e2e, rng)}]),
                 "latency")
    layers = []
    for i in range(n_layers):
        est = float(rng.uniform(0.1, 1.5))
        layers.append({"layer": i, "module": f"layers.{i}", "type": ["Conv", "C3", "SPPF"][i % 3],
                       "from_": "-1", "repeats": 1, "params": 1000 * i, "in_shapes": "1x16x32x32",
                       **_measurement(est, rng)})
    ldf = pd.DataFrame(layers)
    ldf["share"] = ldf["estimate_ms"] / ldf["estimate_ms"].sum()
    ldf["of_e2e"] = ldf["estimate_ms"] / e2e
    w.save_table(ldf, "layers")
    by_op = pd.DataFrame([
        {"op": "conv2d", "category": "pointwise", "group": "conv", "calls": 6.0, "time_ms": 1.2},
        {"op": "conv2d", "category": "depthwise", "group": "conv", "calls": 3.0, "time_ms": 0.6},
        {"op": "silu_", "category": "elementwise", "group": "elementwise", "calls": 9.0, "time_ms": 0.5},
        {"op": "cat", "category": "data_movement", "group": "data_movement", "calls": 2.0, "time_ms": 0.2},
        {"op": "max_pool2d", "category": "pooling", "group": "other", "calls": 1.0, "time_ms": 0.1}])
    by_op["share"] = by_op["time_ms"] / by_op["time_ms"].sum()
    w.save_table(by_op, "ops")
    by_cat = by_op.groupby(["category", "group"], as_index=False).agg(time_ms=("time_ms", "sum"),
                                                                     calls=("calls", "sum"))
    by_cat["share"] = by_cat["time_ms"] / by_cat["time_ms"].sum()
    by_cat["ops"] = "conv2d"
    w.save_table(by_cat, "ops_by_category")
    w.write_meta(model=model, imgsz=imgsz, estimator="p10", backend="torch", device="cpu", threads=1,
                 warnings=[], layers_sum_ms=float(ldf["estimate_ms"].sum()))
    return path


GUIDELINE_ROWS = {"G1": ["1:1", "1:2", "1:6", "1:12"], "G2": ["g=1", "g=2", "g=4", "g=8"]}


def write_guidelines_run(root: Path, widths: tuple[int, ...] = (1, 2), seed: int = 2) -> Path:
    """A ``guidelines`` run: G1.csv, G2.csv (TABLE_COLUMNS of latlab.guidelines.run) and verdicts.csv."""
    rng = np.random.default_rng(seed)
    path = root / "guidelines" / "quick"
    w = RunWriter(path, "guidelines", threads=1)
    verdicts = []
    for g, labels in GUIDELINE_ROWS.items():
        rows = []
        for width in widths:
            base_ms = 1.0 * width ** 2
            for k, label in enumerate(labels):
                rel = 1.0 + 0.08 * k + 0.01 * rng.random() * (k > 0)
                est = base_ms * rel
                madds = 10_000_000 * width ** 2
                rows.append({"guideline": g, "table": int(g[1]), "row": label, "key": k + 1,
                             "is_baseline": k == 0, "width": width, "platform": "arm",
                             "built": f"c={64 * width}", "printed": f"c={64 * width}", "exact": True, "note": "",
                             "in_channels": 64 * width, "imgsz": 56, "batch": 1, "params": 4096,
                             "madds": madds, "flops": 2 * madds, "mac_bytes": 1_000_000 * (1 + 0.2 * k),
                             "madds_rel": 1.0, "mac_rel": 1 + 0.2 * k, **_measurement(est, rng), "rounds": 40,
                             "throughput": 1000 / est, "unit": "images/s",
                             "rel_latency": rel, "rel_ci_low": 1.0 if k == 0 else rel - 0.02,
                             "rel_ci_high": 1.0 if k == 0 else rel + 0.02, "paper_column": f"ARM ×{width}",
                             "paper_throughput": 76.2 / (1 + 0.1 * k), "paper_unit": "images/s",
                             "paper_rel_latency": 1 + 0.1 * k})
            verdicts.append({"guideline": g, "width": width, "verdict": "holds", "trend_rho": 1.0,
                             "n_rows": 3, "n_support": 3, "n_contradict": 0, "peak_rel_latency": 1.24,
                             "paper_verdict": "holds", "paper_trend_rho": 1.0, "reason": "all rows slower"})
        w.save_table(pd.DataFrame(rows), g)
    w.save_table(pd.DataFrame(verdicts), "verdicts")
    w.write_meta(citation="Ma et al., ECCV 2018", settings={"imgsz": 56, "batch": 1, "platform": "arm",
                                                            "estimator": "p10", "quick": True},
                 substitutions=[], warnings=[], verdicts={})
    return path


@dataclass
class SearchFixture:
    n_feasible: int
    n_infeasible: int
    n_pruned: int
    baselines: list[str]
    front: list[int]
    budget: float


def write_search_run(root: Path, n_trials: int = 24, budget: float = 6.0, seed: int = 3,
                     accuracy: str = "map") -> tuple[Path, SearchFixture]:
    """A search study and its export, laid out like ``latlab search run`` + ``export``: the Optuna journal
    in ``search/demo/journal.log``, the export in ``search/demo/export-1/`` (trials.csv with a ``pareto``
    column on ``map``, pareto.csv, yamls/trial_NNNNN.yaml). ``front`` is computed here on ``accuracy``."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    study_dir = root / "search" / "demo"
    path = study_dir / "export-1"
    (path / "yamls").mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    study = optuna.create_study(study_name="demo", storage=storage, directions=["minimize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    blocks = ["shufflenetv2", "ghost", "mbconv"]
    rows = []
    for t in range(n_trials):
        trial = study.ask()
        choice = [trial.suggest_categorical(f"stage{s}_block", blocks) for s in range(1, 4)]
        width = trial.suggest_float("width", 0.25, 1.0)
        lat = 2.0 + 6.0 * width + 0.5 * blocks.index(choice[0]) + float(rng.normal(0, 0.2))
        acc = 0.2 + 0.5 * width - 0.03 * blocks.index(choice[1]) + float(rng.normal(0, 0.02))
        map_ = acc * 0.6 - 0.02 * blocks.index(choice[2])
        baseline = {0: "yolov5n", 1: "yolov5s-shufflenetv2"}.get(t, "")
        pruned = t in (5, 11, 17)
        state = "PRUNED" if pruned else "COMPLETE"
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [lat, map_])
        yaml_rel = f"yamls/trial_{t:05d}.yaml"
        (path / yaml_rel).write_text(f"# trial {t}\nnc: 80\nwidth_multiple: {width:.3f}\nbackbone:\n"
                                     + "".join(f"  - [-1, 1, {b}, [64]]\n" for b in choice))
        arch = f"baseline:{baseline}" if baseline else "CBRM24/" + "/".join(f"P{s + 3}:{b}" for s, b in enumerate(choice))
        rows.append({"trial": t, "state": state, "arch": arch, "arch_hash": f"h{t}", "yaml_path": yaml_rel,
                     "latency_ms": lat, "latency_ci_low_ms": lat * 0.97, "latency_ci_high_ms": lat * 1.04,
                     "latency_median_ms": lat * 1.05, "latency_estimator": "p10", "latency_source": "measured",
                     "threads": 1, "params": int(1e6 * width), "madds": int(3e8 * width),
                     "flops": int(6.1e8 * width), "mac_bytes": int(5e7 * width),
                     "map50": np.nan if pruned else acc, "map": np.nan if pruned else map_,
                     "feasible": bool(lat <= budget), "baseline": baseline})
    trials = pd.DataFrame(rows)

    def front_on(col: str) -> list[int]:
        ok = trials[(trials["state"] == "COMPLETE") & trials["feasible"] & (trials["baseline"] == "")]
        return sorted(int(r.trial) for r in ok.itertuples()
                      if not ((ok["latency_ms"] <= r.latency_ms) & (ok[col] >= getattr(r, col))
                              & ((ok["latency_ms"] < r.latency_ms) | (ok[col] > getattr(r, col)))).any())

    trials["pareto"] = trials["trial"].isin(front_on("map"))
    w = RunWriter(path, "search")
    w.save_table(trials, "trials")
    w.save_table(trials[trials["pareto"]].sort_values("latency_ms"), "pareto")
    w.write_meta(study="demo", storage=str(study_dir / "journal.log"), mode="pareto", latency_budget_ms=budget,
                 n_trials=n_trials, pareto_trials=front_on("map"))
    is_base = trials["baseline"] != ""
    done = trials["state"] == "COMPLETE"
    fx = SearchFixture(n_feasible=int((done & trials["feasible"] & ~is_base).sum()),
                       n_infeasible=int((done & ~trials["feasible"] & ~is_base).sum()),
                       n_pruned=int(((trials["state"] == "PRUNED") & ~is_base).sum()),
                       baselines=["yolov5n", "yolov5s-shufflenetv2"], front=front_on(accuracy), budget=budget)
    return path, fx


def write_lut_run(root: Path, n: int = 15, seed: int = 4) -> tuple[Path, int]:
    """A ``lut check`` run (models.csv, metrics.csv); returns (path, rows whose prediction is within ±10 %)."""
    rng = np.random.default_rng(seed)
    measured = rng.uniform(1, 20, n)
    errs = np.linspace(-0.2, 0.2, n)
    predicted = measured * (1 + errs)
    path = root / "lut-check" / "20260101-000000"
    w = RunWriter(path, "lut-check", threads=1)
    models = pd.DataFrame({"arch": [f"CBRM24/P3:mv3k5-{i}" for i in range(n)], "arch_hash": [f"h{i}" for i in range(n)],
                           "measured_ms": measured, "measured_median_ms": measured * 1.03,
                           "sum_ms": measured * 0.8, "predicted_ms": predicted,
                           "sum_err_pct": -20.0, "pred_err_pct": 100 * errs, "madds": 1e8, "mac_bytes": 1e7,
                           "measured_now": 0})
    w.save_table(models, "models")
    within = 100.0 * float(np.mean(np.abs(errs) <= 0.1))
    w.save_table(pd.DataFrame([{"predictor": "raw_sum", "within_5_pct": 0.0, "within_10_pct": 0.0, "mape_pct": 20.0,
                                "spearman": 1.0, "kendall": 1.0, "n": n},
                               {"predictor": "calibrated", "within_5_pct": 20.0, "within_10_pct": within,
                                "mape_pct": 10.7, "spearman": 0.9, "kendall": 0.8, "n": n}]), "metrics")
    w.write_meta(lut={"path": "cpu-1t.json"}, settings={"n": n}, backend="torch", estimator="p10")
    return path, int(np.sum(np.abs(errs) <= 0.1))


def write_all(root: Path) -> dict[str, object]:
    """Every kind of run under ``root`` (plus a ``train`` run no page shows)."""
    count_path, prof = write_count_run(root)
    write_profile_run(root)
    write_count_run(root, model="wide", n_layers=4, seed=5)
    write_profile_run(root, model="wide", n_layers=4, seed=6)
    write_count_run(root, model="deep", n_layers=8, seed=7)
    write_profile_run(root, model="deep", n_layers=8, seed=8)
    g = write_guidelines_run(root)
    s_path, s = write_search_run(root)
    l_path, inside = write_lut_run(root)
    train = root / "train" / "x"
    train.mkdir(parents=True)
    (train / "meta.json").write_text(json.dumps({"job": "train", "command": "latlab train"}))
    return {"profile": prof, "search": s, "lut_inside": inside, "paths": [count_path, g, s_path, l_path]}


# ------------------------------------------------------------------------------------------ tests
def test_loaders_classify_each_job(tmp_path: Path) -> None:
    write_all(tmp_path)
    found = discover(tmp_path)
    kinds = {r.path.relative_to(tmp_path).as_posix(): r.kind for r in found.runs}
    assert kinds["count/tiny-64"] == "profile"
    assert kinds["profile/tiny-64"] == "profile"
    assert kinds["guidelines/quick"] == "guidelines"
    assert kinds["search/demo/export-1"] == "search"
    assert kinds["lut-check/20260101-000000"] == "lut"
    assert [p.relative_to(tmp_path).as_posix() for p, _ in found.skipped] == ["train/x"]
    assert found.kinds == ["guidelines", "profile", "search", "lut"]


def test_loaders_fall_back_to_columns_without_a_job(tmp_path: Path) -> None:
    s_path, _ = write_search_run(tmp_path)
    l_path, _ = write_lut_run(tmp_path)
    g_path = write_guidelines_run(tmp_path)
    c_path, _ = write_count_run(tmp_path)
    for p in (s_path, l_path, g_path, c_path):
        meta = json.loads((p / "meta.json").read_text())
        del meta["job"]
        (p / "meta.json").write_text(json.dumps(meta))
    assert [load_run(p).kind for p in (s_path, l_path, g_path, c_path)] == ["search", "lut", "guidelines",
                                                                           "profile"]
