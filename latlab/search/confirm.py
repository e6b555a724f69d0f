"""Confirm a search's winner against a baseline: retrain both at the reference protocol, time both interleaved.

A search ranks candidates with a cheap estimator (a few epochs, a proxy). Whether its best feasible model
really beats a baseline is a separate question with a more expensive answer, and this module gives it:

* accuracy: the winner and the baseline are trained with the reference protocol (the long training of the
  fidelity benchmark, :class:`~latlab.search.reference.ReferenceProtocol`), once per training seed, through
  :func:`~latlab.search.reference.train_reference`: resumable, shardable, one CSV row per finished training;
* latency: both are timed in the same interleaved rounds (:func:`~latlab.profiling.compare.compare`) at the
  study's image size and threads, ratio winner / baseline with a bootstrap CI;
* verdict (:class:`Confirmation`): the winner *dominates* when its latency ratio is ≤ ``latency_scale`` and
  its mean mAP is ≥ the baseline's + ``margin_sd`` seed-to-seed standard deviations. The standard deviation
  is the reference results' pooled one when those were made with the same protocol (many architectures,
  steadier), else the one pooled over the two retrained models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from latlab.errors import SearchError
from latlab.inputs import example_input
from latlab.ops.builder import build_model
from latlab.profiling.compare import compare
from latlab.runs import RunWriter
from latlab.search.evaluate import baseline_cfg
from latlab.search.export import best_trial, trials_frame
from latlab.search.join import ATTR
from latlab.search.reference import (
    SET_VERSION,
    ReferenceArch,
    ReferenceProtocol,
    ReferenceSet,
    Trainer,
    matching_reference,
    pooled_seed_sd,
    read_protocol,
    reference_table,
    train_reference,
    write_reference_set,
)
from latlab.search.space import arch_hash
from latlab.search.storage import load_search_study

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Confirmation:
    """The winner (``trial``) against ``baseline``: per-seed reference mAPs, the interleaved latency ratio
    winner / baseline with its CI, and the seed-to-seed sd the accuracy margin is counted in."""

    study: str
    trial: int
    baseline: str
    map_winner: tuple[float, ...]
    map_baseline: tuple[float, ...]
    seed_sd: float
    seed_sd_source: str
    latency_ratio: float
    latency_ci: tuple[float, float]
    winner_ms: float
    baseline_ms: float
    rounds: int
    latency_scale: float = 0.8
    margin_sd: float = 2.0

    @property
    def map_gain(self) -> float:
        """Mean reference mAP of the winner minus the baseline's."""
        return _mean(self.map_winner) - _mean(self.map_baseline)

    @property
    def faster(self) -> bool:
        return self.latency_ratio <= self.latency_scale

    @property
    def more_accurate(self) -> bool:
        return self.map_gain >= self.margin_sd * self.seed_sd

    @property
    def dominates(self) -> bool:
        return self.faster and self.more_accurate

    def text(self) -> str:
        verdict = "dominates" if self.dominates else "does not dominate"
        return (f"trial {self.trial} {verdict} {self.baseline}: latency ratio {self.latency_ratio:.3f} "
                f"[{self.latency_ci[0]:.3f}, {self.latency_ci[1]:.3f}] ({self.winner_ms:.2f} vs "
                f"{self.baseline_ms:.2f} ms, {self.rounds} interleaved rounds; needs ≤ {self.latency_scale}); "
                f"reference mAP50-95 {_mean(self.map_winner):.4f} vs {_mean(self.map_baseline):.4f} "
                f"(seeds {_seeds(self.map_winner)} vs {_seeds(self.map_baseline)}), gain {self.map_gain:+.4f} = "
                f"{self.map_gain / self.seed_sd:+.1f} seed sd (sd {self.seed_sd:.4f}, {self.seed_sd_source}; needs "
                f"≥ {self.margin_sd:g})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"map_gain": self.map_gain, "faster": self.faster,
                               "more_accurate": self.more_accurate, "dominates": self.dominates}


def _mean(xs: tuple[float, ...]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _seeds(xs: tuple[float, ...]) -> str:
    return "/".join(f"{x:.4f}" for x in xs)


def winner_and_baseline(study_name: str, baseline: str, *, storage: str | None = None,
                        results_root: Path | str | None = None, trial: int | None = None
                        ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(winner row with its ``cfg``, baseline cfg, study attributes without the ``latlab.`` prefix).

    The winner is ``trial`` or the study's best feasible search trial; a study without one, a trial number it
    does not hold, or a trial without a stored model config is a one-line ``SearchError``."""
    kw = {"root": results_root} if results_root is not None else {}
    study, _ = load_search_study(study_name, storage, **kw)
    attrs = {k.removeprefix(ATTR): v for k, v in study.user_attrs.items() if k.startswith(ATTR)}
    df = trials_frame(study)
    if trial is None:
        best = best_trial(df, attrs.get("mode", "constrained"))
        if best is None:
            raise SearchError(f"study {study_name!r} has no finished feasible search trial to confirm")
        trial = int(best["trial"])
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial not in by_number:
        raise SearchError(f"study {study_name!r} has no trial {trial} (trials 0 to {len(by_number) - 1})")
    cfg = by_number[trial].user_attrs.get("cfg")
    if not cfg:
        raise SearchError(f"study {study_name!r} trial {trial} has no stored model config (failed or baseline?)")
    row = df[df["trial"] == trial].iloc[0].to_dict() | {"cfg": cfg, "trial": trial}
    return row, baseline_cfg(baseline, int(attrs.get("nc") or cfg.get("nc", 80))), attrs


def resolve_protocol(attrs: dict[str, Any], reference: Path | str | None) -> tuple[ReferenceProtocol, Path | None]:
    """The reference protocol to retrain with: ``reference``'s (a results CSV with its sidecar), else the
    newest shipped reference trained on the study's data; none found is a ``SearchError``."""
    path = Path(reference) if reference is not None else matching_reference(attrs.get("train_budget") or {})
    if path is None:
        raise SearchError("no shipped reference protocol trains on this study's data; pass --reference "
                          "RESULTS.csv (made by `latlab fidelity reference`)")
    proto = read_protocol(path)
    if proto is None:
        raise SearchError(f"{path}: no protocol sidecar ({path.with_suffix('.json').name}) beside it")
    return proto, path


def confirm_winner(study_name: str, baseline: str = "yolov5s-shufflenetv2", out: Path | str = Path("."), *,
                   storage: str | None = None, results_root: Path | str | None = None, trial: int | None = None,
                   reference: Path | str | None = None, protocol: ReferenceProtocol | None = None,
                   latency_scale: float = 0.8, margin_sd: float = 2.0, rounds: int = 40,
                   shard: tuple[int, int] = (0, 1), progress: Progress | None = None,
                   trainer: Trainer | None = None) -> Confirmation | None:
    """Retrain the winner and ``baseline`` with the reference protocol (``out/confirm.csv``, resumable), then
    time both interleaved and write ``out/confirmation.json``; returns None while another shard still has
    trainings to run. ``protocol`` overrides the one read from ``reference``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    winner, base_cfg, attrs = winner_and_baseline(study_name, baseline, storage=storage,
                                                  results_root=results_root, trial=trial)
    ref_path: Path | None = None
    if protocol is None:
        protocol, ref_path = resolve_protocol(attrs, reference)
    name = f"trial{winner['trial']}"
    archs = [ReferenceArch(name, arch_hash(winner["cfg"]), winner["cfg"], float(winner.get("latency_ms", math.nan)),
                           "sampled", str(winner.get("arch", ""))),
             ReferenceArch(baseline, arch_hash(base_cfg), base_cfg, math.nan, "seed", baseline)]
    header = {"version": SET_VERSION, "nc": base_cfg.get("nc"), "study": study_name,
              "selection": f"search winner (trial {winner['trial']}) and baseline {baseline}"}
    set_path = write_reference_set(ReferenceSet(None, header, archs), out / "confirm_set.yaml")
    train_reference(set_path, protocol, out / "confirm.csv", shard=shard, progress=progress, trainer=trainer)
    table = reference_table(out / "confirm.csv")  # re-read: other shards may have finished meanwhile
    if len(table) < 2 or (table["n_seeds"] < len(protocol.seeds)).any():
        return None
    maps = {r["name"]: tuple(float(r[f"map_seed{s}"]) for s in protocol.seeds) for _, r in table.iterrows()}
    sd, source = _seed_sd(table, ref_path, protocol)
    imgsz, threads = int(attrs.get("imgsz") or protocol.imgsz), int(attrs.get("threads") or 1)
    if progress:
        progress(f"timing {name} and {baseline} interleaved at {imgsz}², {threads} thread(s), {rounds} rounds")
    cmp = compare(build_model(winner["cfg"], imgsz=imgsz), build_model(base_cfg, imgsz=imgsz), example_input(imgsz),
                  names=(name, baseline), rounds=rounds, threads=threads, progress=False)
    result = Confirmation(study_name, int(winner["trial"]), baseline, maps[name], maps[baseline], sd, source,
                          cmp.ratio, (cmp.ci_low, cmp.ci_high), cmp.a.estimate_ms, cmp.b.estimate_ms, cmp.rounds,
                          latency_scale, margin_sd)
    writer = RunWriter(out, "confirm", threads=threads)
    writer.save_table(table, "reference")
    writer.save_table(pd.DataFrame([cmp.to_row()]), "latency")
    writer.write_meta(study=study_name, protocol=protocol.to_dict(), reference=str(ref_path or ""),
                      winner_arch=winner.get("arch"), search_map=winner.get("map"),
                      search_latency_ms=winner.get("latency_ms"))
    (out / "confirmation.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _seed_sd(table: pd.DataFrame, ref_path: Path | None, protocol: ReferenceProtocol) -> tuple[float, str]:
    """The seed-to-seed sd: pooled over the reference results when they used ``protocol``, else over ``table``."""
    if ref_path is not None and read_protocol(ref_path) == protocol:
        ref = reference_table(ref_path)
        sd = pooled_seed_sd(ref[[c for c in ref.columns if c.startswith("map_seed")]])
        if math.isfinite(sd):
            return sd, f"pooled over the {int((ref['n_seeds'] >= 2).sum())} architectures of {ref_path.name}"
    sd = pooled_seed_sd(table[[c for c in table.columns if c.startswith("map_seed")]])
    return sd, "pooled over the two retrained models"
