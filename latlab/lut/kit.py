"""Board kit: the blocks of a space as ONNX files plus a runner that needs only onnxruntime and numpy.

``export_kit`` writes::

    KIT/
      manifest.json      # format, imgsz, space, protocol, one record per block and calibration model
      run_kit.py         # latlab/lut/kit_runner.py (stdlib + numpy + onnxruntime)
      blocks/<id>.onnx   # one per distinct block (id = sha1 of its key)
      models/<hash>.onnx # the calibration models, end to end
      README.txt

Weight values are left out of the ONNX files (every float initializer above 1 KiB points to an external
``.bin`` that the runner fills with random values right before loading): the default space's blocks hold
≈ 265 M parameters, about 1 GB with weights, while latency does not depend on the values.
``import_kit`` turns the runner's ``results.jsonl`` plus the manifest into a normal latency table
(``source: "kit"``, backend ``onnxruntime``) with its calibration fitted from the models' end-to-end times.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latlab.errors import DeviceError, TableError
from latlab.inputs import example_input
from latlab.lut.build import (
    CALIB_SEED,
    DEFAULT_CALIB,
    DEFAULT_IMGSZ,
    Arch,
    ArchSource,
    BlockSet,
    _archs_hash,
    collect_blocks,
)
from latlab.lut.calibration import fit_calibration
from latlab.lut.kit_runner import KIT_FORMAT, RESULTS_FORMAT, KitError, read_manifest
from latlab.lut.measure import DEFAULT_BATCH, DEFAULT_ROUNDS, _jsonable, default_protocol, progress_task
from latlab.lut.table import Entry, LatencyTable, package_versions
from latlab.profiling.backends import _private_copy, export_onnx
from latlab.progress import ProgressReporter
from latlab.validate import positive_float

KIT_SCHEMA = 1
RUNNER = Path(__file__).with_name("kit_runner.py")
EXTERNAL_MIN_BYTES = 1024


def _strip_weights(path: Path) -> dict[str, Any] | None:
    """Point every float32 initializer larger than 1 KiB at ``<name>.bin`` (not written); returns its size."""
    import onnx  # optional dependency (the onnx extra)
    from onnx import TensorProto  # optional dependency (the onnx extra)

    model = onnx.load(str(path))
    bin_name = path.with_suffix(".bin").name
    offset = 0
    for t in model.graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        n = 1
        for d in t.dims:
            n *= int(d)
        if n * 4 <= EXTERNAL_MIN_BYTES:
            continue
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", bin_name), ("offset", str(offset * 4)), ("length", str(n * 4))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        offset += n
    onnx.save(model, str(path))
    return {"file": bin_name, "floats": offset} if offset else None


def _inputs(path: Path) -> list[dict[str, Any]]:
    import onnx  # optional dependency (the onnx extra)

    model = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in model.graph.initializer}
    out = []
    for i in model.graph.input:
        if i.name in init:
            continue
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        out.append({"name": i.name, "shape": dims})
    return out


def _export(module: Any, example: Any, path: Path) -> dict[str, Any]:
    export_onnx(_private_copy(module), example, path)
    weights = _strip_weights(path)
    return {"inputs": _inputs(path), "weights": weights}


@dataclass
class KitInfo:
    """What ``export_kit`` wrote."""

    path: Path
    blocks: int
    models: int
    bytes: int


def export_kit(out: str | Path, *, source: ArchSource | None = None, archs: Sequence[Arch] | None = None,
               imgsz: int = DEFAULT_IMGSZ, rounds: int = DEFAULT_ROUNDS, batch: int = DEFAULT_BATCH,
               estimator: str = "p10", calib: int = DEFAULT_CALIB, calib_seed: int = CALIB_SEED, verify: int = 8,
               progress: bool | ProgressReporter = True) -> KitInfo:
    """Write a board kit for ``source`` (a search space: ``latlab.search.coverage.space_source(space)``) or an
    explicit ``archs`` list to ``out`` (see the module docstring)."""
    try:
        import onnx  # noqa: F401  # optional dependency (the onnx extra)
    except ImportError:
        raise DeviceError("export-kit needs the onnx package: pip install latlab[onnx]") from None
    out = Path(out)
    if (out / "manifest.json").exists():
        raise TableError(f"{out}: already holds a kit (manifest.json); choose another folder or delete it")
    sp = source if archs is None else None
    if archs is None and sp is None:
        raise TableError("export_kit needs archs=[...] or source= (a search space: "
                         "latlab.search.coverage.space_source(space))")
    if sp is not None:
        calib_archs = sp.sample(calib, calib_seed) if calib else []
        blocks = sp.enumerate(imgsz, verify, progress)
        space_info = dict(sp.info)
    else:
        calib_archs = list(archs or [])[:calib] if calib else []
        blocks = BlockSet(imgsz)
        space_info = {"name": "explicit", "hash": _archs_hash(archs or []), "source": "architecture list"}
    blocks = collect_blocks([*(archs or []), *calib_archs], imgsz, progress=progress, blocks=blocks,
                            keep_models=[a.name for a in calib_archs])
    (out / "blocks").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    records = []
    with progress_task(progress, "exporting blocks", len(blocks.units)) as bar:
        for key, u in blocks.units.items():
            fid = hashlib.sha1(key.encode()).hexdigest()[:16]
            path = out / "blocks" / f"{fid}.onnx"
            info = _export(u.module, u.example_input(), path)
            params, madds, mac = blocks.counts[key]
            records.append({"key": key, "file": f"blocks/{fid}.onnx", **info, "type": u.type, "part": u.part,
                            "fields": u.fields, "args": {k: _jsonable(v) for k, v in u.args.items()},
                            "in_shapes": [list(s) for s in u.in_shapes], "out_shape": list(u.out_shape),
                            "params": params, "madds": madds, "mac_bytes": mac})
            bar.advance(1)
    models = []
    x = example_input(imgsz, seed=0)
    for a in calib_archs:
        path = out / "models" / f"{a.arch_hash}.onnx"
        info = _export(blocks.models[a.name], x, path)
        models.append({"name": a.name, "arch_hash": a.arch_hash, "file": f"models/{a.arch_hash}.onnx", **info,
                       "units": blocks.arch_units[a.name]})

    manifest = {"format": KIT_FORMAT, "schema_version": KIT_SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "imgsz": imgsz, "backend": "onnxruntime", "device": "cpu", "space": space_info,
                "protocol": default_protocol(rounds, batch, estimator), "exported_with": package_versions(),
                "blocks": records, "models": models}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.copyfile(RUNNER, out / "run_kit.py")
    (out / "README.txt").write_text(_readme(out.name, len(records), len(models)))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return KitInfo(out, len(records), len(models), size)


def _readme(name: str, n_blocks: int, n_models: int) -> str:
    return (f"latlab board kit: {n_blocks} blocks and {n_models} calibration models as ONNX.\n\n"
            "On the board (Python 3.8+):\n"
            "    python3 -m venv ~/latlab-kit && ~/latlab-kit/bin/pip install onnxruntime numpy\n"
            f"    cd {name} && ~/latlab-kit/bin/python run_kit.py --threads 1\n"
            "Stop it any time; running the same command again continues. Then, back on the host:\n"
            f"    latlab lut import {name}/results.jsonl --kit {name} --out board.lut.json\n")


def _read_results(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    if not path.is_file():
        raise TableError(f"{path}: no such kit results file (the runner writes KIT/results.jsonl)")
    header, entries, models = None, {}, {}
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise TableError(f"{path}: line {i + 1} is not valid JSON (corrupt results file)") from None
        kind = rec.get("kind") if isinstance(rec, dict) else None
        if kind == "header":
            header = rec
        elif kind == "entry" and isinstance(rec.get("key"), str):
            entries[rec["key"]] = rec
        elif kind == "model" and isinstance(rec.get("name"), str):
            models[rec["name"]] = rec
    if header is None or header.get("format") != RESULTS_FORMAT:
        raise TableError(f"{path}: not kit results (no '{RESULTS_FORMAT}' header line)")
    return header, entries, models


def check_model_time(rec: dict[str, Any], results: Path) -> float:
    """A calibration model's end-to-end time from the runner's results: a finite number > 0 (ms), else a
    ``TableError`` naming the results file and the model."""
    where = f"{results}: model {rec.get('name')!r}"
    for k in ("estimate_ms", "median_ms"):
        positive_float(rec.get(k), f"{where}: '{k}'", error=TableError)
    return float(rec["estimate_ms"])


def import_kit(results: str | Path, kit: str | Path, out: str | Path | None = None, *,
               calibration: str = "auto", allow_missing: bool = False) -> LatencyTable:
    """Turn the runner's ``results.jsonl`` (+ the kit's manifest) into a latency table; save it to ``out``."""
    results, kit = Path(results), Path(kit)
    if not (kit / "manifest.json").is_file():
        raise TableError(f"{kit}: no manifest.json (pass the kit folder the results were made with)")
    try:
        manifest, manifest_text = read_manifest(kit)  # the runner's own checks: types, paths inside the kit
    except KitError as exc:
        raise TableError(str(exc)) from None
    header, got, got_models = _read_results(results)
    try:
        return _import(results, kit, out, manifest, manifest_text, header, got, got_models, calibration,
                       allow_missing)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TableError(f"{results} with {kit}/manifest.json: a record lacks a field or has the wrong type "
                         f"({type(exc).__name__}: {str(exc)[:120]}); export the kit again or rerun the board") from None


def _import(results: Path, kit: Path, out: str | Path | None, manifest: dict[str, Any], manifest_text: str,
            header: dict[str, Any], got: dict[str, dict[str, Any]], got_models: dict[str, dict[str, Any]],
            calibration: str, allow_missing: bool) -> LatencyTable:
    if header.get("manifest_sha256") != hashlib.sha256(manifest_text.encode()).hexdigest():
        raise TableError(f"{results}: made with another kit than {kit} (manifest checksum differs)")
    missing = [b["key"] for b in manifest["blocks"] if b["key"] not in got]
    if missing and not allow_missing:
        raise TableError(f"{results}: {len(missing)} of {len(manifest['blocks'])} blocks have no timing (first: "
                         f"{missing[0]}); run `python run_kit.py` again on the board to finish")
    proto = header["protocol"]
    entries = {}
    for b in manifest["blocks"]:
        r = got.get(b["key"])
        if r is None:
            continue
        d = {k: b[k] for k in ("type", "part", "fields", "args", "in_shapes", "out_shape", "params", "madds",
                               "mac_bytes")}
        d.update({k: r[k] for k in ("estimate_ms", "median_ms", "iqr_ms", "p10_ms", "min_ms", "n")})
        entries[b["key"]] = Entry.from_dict(d, f"{results}: entry {b['key']!r}")
    table = LatencyTable(backend="onnxruntime", precision="fp32", threads=int(header["threads"]),
                         imgsz=int(manifest["imgsz"]),
                         estimator=str(proto.get("estimator", "p10")), fingerprint=header["fingerprint"],
                         versions={**header.get("versions", {}), "latlab_export": manifest["exported_with"].get("latlab")},
                         protocol=proto, space=manifest["space"], entries=entries, device="cpu", source="kit")
    rows = []
    for m in manifest.get("models", []):
        r = got_models.get(m["name"])
        if r is None or any(k not in entries for k in m["units"]):
            continue
        es = [entries[k] for k in m["units"]]
        check_model_time(r, results)
        rows.append({"arch": m["name"], "arch_hash": m["arch_hash"], "units": len(es),
                     "sum_ms": float(sum(e.estimate_ms for e in es)), "madds": int(sum(e.madds for e in es)),
                     "mac_bytes": int(sum(e.mac_bytes for e in es)), "measured_ms": float(r["estimate_ms"]),
                     "measured_median_ms": float(r["median_ms"])})
    if rows:
        table.calibration = fit_calibration(rows, calibration)
    elif manifest.get("models") and not allow_missing:
        raise TableError(f"{results}: the calibration models were not timed; run `python run_kit.py` again "
                         "without --skip-models")
    if out is not None:
        table.save(out)
    return table
