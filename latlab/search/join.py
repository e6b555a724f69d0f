"""Create a study or join an existing one: the study attributes a run records, and the checks that refuse
to mix latencies or accuracies that are not comparable (other device, other settings, other objectives)."""

from __future__ import annotations

import json
import time
from typing import Any

import optuna

from latlab.errors import SearchError
from latlab.search.objective_registry import DEFAULT_OBJECTIVES, directions, resolve
from latlab.search.settings import SearchSettings
from latlab.search.space import ORDINAL, SearchSpace
from latlab.search.storage import StorageInfo

ATTR = "latlab."  # prefix of study user attributes


DEFAULT_ACCURACY = {"estimator": "train", "arg": None}  # what a study made before estimators stands for


def _study_attrs(s: SearchSettings, space: SearchSpace, latency_source: str, fp: dict[str, Any], hw: str,
                 accuracy: Any) -> dict[str, Any]:
    """The study attributes a new study records (``ATTR`` prefix added when written). ``accuracy`` is the
    accuracy estimator: its ``identity()`` and, for estimators that train, its ``budget()``."""
    identity = accuracy.identity() if hasattr(accuracy, "identity") else dict(DEFAULT_ACCURACY)
    budget = accuracy.budget() if hasattr(accuracy, "budget") else None
    return {
        "mode": s.mode, "imgsz": s.imgsz, "latency_source": latency_source,
        "latency_kind": "lut" if latency_source.startswith("lut:") else "measured",
        "hardware_key": hw, "fingerprint": fp, "space_hash": space.space_hash, "choices_hash": space.choices_hash, "space": space.raw,
        "space_name": space.name, "latency_budget_ms": s.latency_budget_ms, "budget_from": s.budget_from,
        "budget_scale": s.budget_scale, "nc": space.nc,
        "train_budget": budget, "baselines": list(s.baselines), "estimator": s.estimator,
        "threads": s.threads, "device": s.device, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "param_encoding": ORDINAL, "objectives": list(s.study_objectives), "backend": s.backend,
        "accuracy_estimator": identity, "train_devices": s.train_devices, "amp": s.amp, "workers": s.n_workers,
    }


# Study attributes a joining worker must agree on (latency and mAP would not be comparable otherwise), with
# the value a study made before the attribute existed stands for.
_MUST_MATCH: dict[str, Any] = {k: None for k in ("mode", "imgsz", "latency_kind", "latency_source", "space_hash",
                                                 "latency_budget_ms", "nc", "train_budget", "estimator")}
_MUST_MATCH.update(objectives=list(DEFAULT_OBJECTIVES), backend="torch", accuracy_estimator=DEFAULT_ACCURACY,
                   budget_from=None, budget_scale=1.0)


def _check_join(name: str, existing: dict[str, Any], mine: dict[str, Any], location: str) -> None:
    """Raise ``SearchError`` when the study ``existing`` (its user attributes) cannot take this run's trials."""
    if f"{ATTR}mode" not in existing:
        raise SearchError(f"study {name!r} in {location} exists but was not created by latlab search "
                          "(no latlab.* study attributes); use another --study name")
    if mine["latency_kind"] == "measured" and existing.get(ATTR + "hardware_key") != mine["hardware_key"]:
        theirs = existing.get(ATTR + "fingerprint") or {}
        ours = mine["fingerprint"]
        raise SearchError(
            f"study {name!r} in {location} was measured on another device ({theirs.get('cpu_model')}, "
            f"{theirs.get('threads')} thread(s), torch {theirs.get('torch')}, key "
            f"{existing.get(ATTR + 'hardware_key')}); this host is {ours.get('cpu_model')}, {ours.get('threads')} "
            f"thread(s), torch {ours.get('torch')} (key {mine['hardware_key']}). Measured latencies from "
            "different devices must not be mixed: use another --study name, or --latency lut:FILE")
    diffs = []
    for k, default in _MUST_MATCH.items():
        if k == "latency_budget_ms" and mine.get("budget_from") is not None:
            continue  # measured by whichever worker created the study; this run adopts it (run._adopt_budget)
        theirs, ours = existing.get(ATTR + k, default), mine.get(k, default)
        if theirs != json.loads(json.dumps(ours)):
            diffs.append(f"{k}: study has {theirs!r}, this run {ours!r}")
    if diffs:
        raise SearchError(f"study {name!r} in {location} was created with other settings ({'; '.join(diffs)}); "
                          "use a new --study name or the study's settings")


def _open_study(s: SearchSettings, info: StorageInfo, attrs: dict[str, Any]) -> tuple[optuna.Study, bool]:
    """Load or create the study; check a joined study's settings before writing anything."""
    name = s.study_name
    dirs = directions(resolve(s.objective_names))
    existing = _load_existing(name, info)
    if existing is None and s.resume:
        raise SearchError(f"--resume: no study {name!r} in {info.location}")
    created = False
    if existing is None:
        try:
            study = optuna.create_study(study_name=name, storage=info.storage, directions=dirs)
            created = True
            # ``mode`` last: a joining worker waits for it (_wait_for_attrs), so it then sees every attribute
            for k, v in sorted(attrs.items(), key=lambda kv: kv[0] == "mode"):
                study.set_user_attr(ATTR + k, v)
        except optuna.exceptions.DuplicatedStudyError:
            existing = _load_existing(name, info)
    if not created:
        assert existing is not None
        _wait_for_attrs(existing)
        _check_join(name, existing.user_attrs, attrs, info.location)
        study = existing
        if [d.name.lower() for d in study.directions] != dirs:
            raise SearchError(f"study {name!r} has directions {[d.name for d in study.directions]}, "
                              f"mode {s.mode} needs {dirs}")
    return study, created


def _load_existing(name: str, info: StorageInfo) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=info.storage)
    except KeyError:
        return None


def _wait_for_attrs(study: optuna.Study, timeout_s: float = 30.0) -> None:
    """A study created a moment ago by another worker may not have its attributes yet."""
    end = time.monotonic() + timeout_s
    while f"{ATTR}mode" not in study.user_attrs and time.monotonic() < end:
        time.sleep(0.5)
