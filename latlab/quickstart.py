"""``latlab quickstart``: the whole story on embedded defaults, in minutes on a laptop CPU.

1. guideline micro-benchmarks (G1–G4, quick settings) on this device;
2. count and time the seed detectors (YOLOv5n, the ShuffleNetV2 and Ghost recipes) side by side in
   interleaved rounds, with a per-layer breakdown of the ShuffleNetV2 one;
3. a small latency-constrained search (the YOLOv5n and ShuffleNetV2 seeds as baseline trials) whose budget
   is the seed ShuffleNetV2 detector's latency as the search itself measures it (``budget_from``: that one measurement also judges the seed, so it is feasible by
   construction);
4. the HTML report over all of it.

Everything lands in one folder (``results/quickstart/<time>/``), one run folder per step, so ``latlab
report`` on it rebuilds the report and nothing is measured twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from latlab.guidelines.run import run_guidelines
from latlab.inputs import example_input
from latlab.ops.builder import build_model
from latlab.ops.zoo import SEED_DETECTORS as ZOO_SEEDS
from latlab.profiling.compare import measure_many
from latlab.profiling.counter import count_model
from latlab.profiling.layerwise import profile_layers
from latlab.report.build import build_report
from latlab.runs import RunWriter, new_run_dir
from latlab.search.export import export_study
from latlab.search.reference import pooled_seed_sd
from latlab.search.run import run_search
from latlab.search.settings import SearchSettings
from latlab.search.storage import load_search_study

# profiled and tabled with the reference YOLOv5n first, then the recipes in the zoo's (search baseline) order
SEED_DETECTORS = ("yolov5n", *(m for m in ZOO_SEEDS if m != "yolov5n"))
BUDGET_SEED = "yolov5s-shufflenetv2"
NOISE_FILE = Path(__file__).resolve().parent / "configs" / "quickstart_noise.csv"


@dataclass
class QuickstartSettings:
    """Defaults sized for ≤ 10 minutes on 2 CPU cores; every step can be skipped.

    The search trains on the ``shapes4-easy`` preset at 64 px (4 epochs of 2000 images, about half a minute
    per candidate on 2 cores): on the hard default data a detector learns nothing measurable in that time
    (every mAP 0.000-0.003), and a front drawn through noise shows nothing. ``imgsz`` is the profile's size.
    """

    imgsz: int = 128
    search_imgsz: int = 64
    threads: int = 1
    search_trials: int = 4
    train_epochs: int = 4
    n_train: int = 2000
    n_val: int = 200
    data_preset: str = "shapes4-easy"
    seed: int = 0
    # the Ghost recipe is profiled but not trained here: at this protocol it costs 500 CPU-s, 3× the others
    baselines: tuple[str, ...] = ("yolov5n", BUDGET_SEED)
    guidelines: bool = True
    profile: bool = True
    search: bool = True
    out: Path | None = None

    def protocol(self) -> dict[str, Any]:
        """What decides a trial's mAP (the shipped seed-noise measurement holds for this protocol only)."""
        return {"imgsz": self.search_imgsz, "epochs": self.train_epochs, "n_train": self.n_train,
                "n_val": self.n_val, "preset": self.data_preset}


@dataclass
class QuickstartResult:
    """Where everything went and how long each step took."""

    root: Path
    report: Path | None
    step_seconds: dict[str, float] = field(default_factory=dict)
    budget_ms: float | None = None
    best: dict | None = None
    separation: FrontSeparation | None = None
    seeds: pd.DataFrame | None = None  # :func:`seed_placement`


@dataclass(frozen=True)
class FrontSeparation:
    """Is the quick start's front more than noise? The mAP range over the search's trained trials and seeds
    against the seed-to-seed standard deviation measured for the same protocol
    (``benchmarks/quickstart_noise.py``, shipped in ``configs/quickstart_noise.csv``)."""

    map_range: float
    seed_sd: float
    n_trials: int

    @property
    def ratio(self) -> float:
        return self.map_range / self.seed_sd if self.seed_sd > 0 else float("nan")


def seed_noise(protocol: dict[str, Any], path: Path = NOISE_FILE) -> pd.DataFrame | None:
    """The shipped seed-to-seed measurement (model, seed, map) if it was made with ``protocol``, else None."""
    meta = path.with_suffix(".json")
    if not path.is_file() or not meta.is_file():
        return None
    if json.loads(meta.read_text()).get("protocol") != protocol:
        return None
    return pd.read_csv(path)


def noise_sd(noise: pd.DataFrame) -> float:
    """The pooled seed-to-seed sd of a noise table (model, seed, map)."""
    return pooled_seed_sd(noise.pivot_table(index="model", columns="seed", values="map"))


def seed_placement(trials: pd.DataFrame, noise: pd.DataFrame | None) -> pd.DataFrame | None:
    """The seed detectors' mAP in this run beside their shipped reference (mean and sd over training seeds):
    columns ``model``, ``map``, ``reference_map``, ``reference_sd``, ``rank`` and ``reference_rank`` (1 = best)."""
    if noise is None or "baseline" not in trials:
        return None
    seeds = trials[trials["baseline"].fillna("").astype(bool) & trials["map"].notna()]
    ref = noise.groupby("model")["map"].agg(reference_map="mean", reference_sd="std")
    out = seeds[["baseline", "map"]].rename(columns={"baseline": "model"}).merge(ref, left_on="model",
                                                                                right_index=True)
    out["rank"] = out["map"].rank(ascending=False).astype(int)
    out["reference_rank"] = out["reference_map"].rank(ascending=False).astype(int)
    return out.sort_values("reference_rank").reset_index(drop=True)


def front_separation(trials: pd.DataFrame, noise: pd.DataFrame | None) -> FrontSeparation | None:
    """:class:`FrontSeparation` of a quick start's trials table (None without a matching noise measurement)."""
    if noise is None:
        return None
    done = trials[(trials["state"] == "COMPLETE") & trials["map"].notna()]
    if len(done) < 2:
        return None
    return FrontSeparation(float(done["map"].max() - done["map"].min()), noise_sd(noise), len(done))


def profile_seeds(out: Path, imgsz: int, threads: int, models: tuple[str, ...] = SEED_DETECTORS) -> pd.DataFrame:
    """Count and time ``models`` in the same interleaved rounds; write one ``profile`` run folder.

    Returns the per-model table (params, madds, mac_bytes, latency statistics) that shows FLOPs are not speed.
    """
    built = {name: build_model(name, nc=10) for name in models}
    x = example_input(imgsz)
    latency = measure_many(built, x, threads=threads, budget_s=20.0, progress=False)
    rows = []
    for name, model in built.items():
        totals = count_model(model, imgsz=imgsz).totals
        rows.append({"model": name, "params": totals["params"], "madds": totals["madds"], "flops": totals["flops"],
                     "mac_bytes": totals["mac_bytes"]})
    table = pd.DataFrame(rows).merge(latency, on="model", how="left")
    writer = RunWriter(out, "profile", threads=threads)
    writer.save_table(table, "models")
    seed = built[BUDGET_SEED]
    layers = profile_layers(seed, x, threads=threads, budget_s=15.0, progress=False)
    writer.save_table(layers.table, "layers")
    writer.save_table(count_model(seed, imgsz=imgsz).ops, "counts")
    writer.write_meta(models=list(models), imgsz=imgsz, layers_model=BUDGET_SEED,
                      layers_sum_over_e2e=layers.ratio)
    return table


def run_quickstart(settings: QuickstartSettings | None = None,
                   on_step: Callable[[str], None] | None = None,
                   on_trial: Callable[[object], None] | None = None) -> QuickstartResult:
    """Run the quickstart steps and build the report; returns where it all is.

    ``on_step(name)`` is called as each step starts, ``on_trial(record)`` after each search trial.
    """
    s = settings or QuickstartSettings()
    root = Path(s.out) if s.out else new_run_dir("quickstart")
    root.mkdir(parents=True, exist_ok=True)
    result = QuickstartResult(root=root, report=None)
    say = on_step or (lambda _msg: None)

    def timed(step: str, fn: Callable[[], object]) -> object:
        say(step)
        t0 = time.perf_counter()
        value = fn()
        result.step_seconds[step] = round(time.perf_counter() - t0, 1)
        return value

    if s.guidelines:
        timed("guidelines", lambda: run_guidelines(quick=True, threads=s.threads).save(root / "guidelines"))
    if s.profile:
        timed("profile", lambda: profile_seeds(root / "profile", s.imgsz, s.threads))
    if s.search:
        timed("search", lambda: _search(s, root, on_trial, result))
    report = timed("report", lambda: build_report(root, root / "report.html"))
    result.report = report.index
    return result


def search_settings(s: QuickstartSettings, root: Path) -> SearchSettings:
    """The quick start's search: constrained, budget = the seed ShuffleNetV2 detector's latency."""
    return SearchSettings(
        mode="constrained", budget_from=BUDGET_SEED, n_trials=s.search_trials, imgsz=s.search_imgsz,
        epochs=s.train_epochs, threads=s.threads, study="quickstart", results_root=root / "search-study",
        data_kwargs={"n_train": s.n_train, "n_val": s.n_val, "preset": s.data_preset}, seed=s.seed,
        baselines=s.baselines,
    )


def _search(s: QuickstartSettings, root: Path, on_trial: Callable[[object], None] | None,
            result: QuickstartResult) -> None:
    """Run the search, export it, and fill ``result``'s best trial, budget and front separation."""
    res = run_search(search_settings(s, root), on_trial=on_trial)
    study, info = load_search_study("quickstart", root=root / "search-study")
    export_study(study, root / "search", storage=info.location)
    result.best, result.budget_ms = res.best, float(study.user_attrs["latlab.latency_budget_ms"])
    noise = seed_noise(s.protocol())
    result.separation = front_separation(res.trials, noise)
    result.seeds = seed_placement(res.trials, noise)
