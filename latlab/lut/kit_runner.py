#!/usr/bin/env python3
"""latlab board kit runner: time the kit's blocks and models with ONNX Runtime on this machine.

Needs only Python 3.8+, ``numpy`` and ``onnxruntime`` (no torch, no latlab)::

    pip install onnxruntime numpy
    python3 run_kit.py --threads 1            # writes results.jsonl next to this script

then copy ``results.jsonl`` back and run ``latlab lut import results.jsonl --kit KIT_DIR --out board.lut.json``.

Protocol (the same as ``latlab lut build``): blocks are timed in batches; in every round each block of the
batch runs once, in a freshly shuffled order; after a few warm-up rounds the per-call times of ``rounds``
rounds are kept and summarised by the estimator (a low percentile, p10 by default) plus median and IQR.
The calibration models are then timed end to end the same way, all in one batch.

The ONNX files ship without their weight values (they would make the kit gigabytes): each file names an
external ``.bin`` file, which this script fills with random float32 values just before loading it and deletes
right after. Latency does not depend on the values. Results are appended and flushed after every batch, so a
killed run continues where it stopped when started again with the same options.

The kit is a file people copy between machines, so the manifest is checked before anything is written: every
path in it must resolve inside the kit folder (no absolute paths, no ``..`` out of it, no links leading out),
weight files are plain ``.bin`` names next to their ONNX file, and a malformed manifest is one error line.
This script cannot import latlab, so it keeps its own copy of latlab.appendfile's tail repair: a line torn by
a kill is cut before the next append, never glued to the next record.
"""

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

KIT_FORMAT = "latlab-lut-kit"
RESULTS_FORMAT = "latlab-lut-kit-results"
ESTIMATORS = {
    "median": lambda a: float(np.quantile(a, 0.5)),
    "p10": lambda a: float(np.quantile(a, 0.1)),
    "p20": lambda a: float(np.quantile(a, 0.2)),
    "min": lambda a: float(np.min(a)),
    "mean": lambda a: float(np.mean(a)),
}


def cpu_model():
    """Same rule as latlab.fingerprint: the first 'model name' of /proc/cpuinfo, else the platform's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def board_model():
    """The board's own name where the kernel tells it (Raspberry Pi, Jetson ...), else None."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_text().strip("\x00\n ")
        except OSError:
            continue
    return None


def fingerprint(threads, ort):
    freq = governor = None
    with contextlib.suppress(OSError, ValueError):
        freq = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000.0
    with contextlib.suppress(OSError):
        governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    return {
        "cpu_model": cpu_model(),
        "board_model": board_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "cpu_freq_mhz": freq,
        "governor": governor,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": None,
        "onnxruntime": ort.__version__,
        "threads": threads,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "device": "cpu",
    }


def stats(samples, estimator):
    a = np.asarray(samples, dtype=float)
    q25, q50, q75 = np.quantile(a, [0.25, 0.5, 0.75])
    return {"estimate_ms": ESTIMATORS[estimator](a), "median_ms": float(q50), "iqr_ms": float(q75 - q25),
            "p10_ms": float(np.quantile(a, 0.1)), "min_ms": float(a.min()), "n": int(a.size)}


class Item:
    """One ONNX file of the kit: its session and random feeds."""

    def __init__(self, kit, spec, ort, threads):
        self.spec = spec
        path = kit / spec["file"]
        weights = spec.get("weights")
        bin_path = None
        if weights:
            bin_path = path.parent / weights["file"]
            rng = np.random.default_rng(0)
            (rng.standard_normal(int(weights["floats"]), dtype=np.float32) * 0.05).tofile(str(bin_path))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        finally:
            if bin_path is not None and bin_path.exists():
                bin_path.unlink()
        rng = np.random.default_rng(0)
        self.feeds = {i["name"]: rng.standard_normal(i["shape"]).astype(np.float32) for i in spec["inputs"]}

    def __call__(self):
        self.sess.run(None, self.feeds)


def interleaved(items, rounds, warmup, seed):
    """Per-call times (ms) of each item over ``rounds`` rounds, order shuffled every round."""
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        for it in items:
            it()
    samples = [[] for _ in items]
    clock = time.perf_counter
    for _ in range(rounds):
        for i in rng.permutation(len(items)):
            fn = items[i]
            t0 = clock()
            fn()
            samples[i].append((clock() - t0) * 1e3)
    return samples


class KitError(ValueError):
    """The kit or its results file cannot be used as it is (one line for the user)."""


def _check(ok, where, expected, got):
    if not ok:
        raise KitError(f"{where}: expected {expected}, got {json.dumps(got)[:80]}")


def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def inside(kit_root, rel, where):
    """``kit_root / rel`` resolved, refused unless it stays inside ``kit_root`` (already resolved)."""
    _check(isinstance(rel, str) and rel.strip() != "", where, "a file path relative to the kit folder", rel)
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise KitError(f"{where}: {rel!r} is an absolute path; a kit's paths must be relative to its folder")
    path = (kit_root / rel).resolve()
    if kit_root not in path.parents:
        raise KitError(f"{where}: {rel!r} points outside the kit folder {kit_root}; a kit's paths must stay "
                       "inside it")
    return path


def _check_item(kit_root, spec, where, name_field):
    _check(isinstance(spec, dict), where, "an object", spec)
    _check(isinstance(spec.get(name_field), str), f"{where}.{name_field}", "a string", spec.get(name_field))
    inside(kit_root, spec.get("file"), f"{where}.file")
    _check(spec["file"].endswith(".onnx"), f"{where}.file", "an .onnx file", spec["file"])
    inputs = spec.get("inputs")
    _check(isinstance(inputs, list), f"{where}.inputs", "a list", inputs)
    for j, i in enumerate(inputs):
        _check(isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("shape"), list)
               and all(_is_int(d, 1) for d in i["shape"]), f"{where}.inputs[{j}]",
               '{"name": str, "shape": [positive ints]}', i)
    weights = spec.get("weights")
    if weights is not None:
        _check(isinstance(weights, dict) and _is_int(weights.get("floats")), f"{where}.weights",
               '{"file": "NAME.bin", "floats": int >= 0}', weights)
        name = weights.get("file")
        _check(isinstance(name, str), f"{where}.weights.file", "a file name", name)
        inside(kit_root, str(Path(spec["file"]).parent / name), f"{where}.weights.file")
        _check(name.endswith(".bin") and name == Path(name).name, f"{where}.weights.file",
               "a plain NAME.bin file name (it sits next to its ONNX file)", name)


def read_manifest(kit):
    """The kit's manifest (dict) and its text, checked (types, paths inside the kit) before any write."""
    path = Path(kit) / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KitError(f"{path}: no such file (pass the kit folder with --kit)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KitError(f"{path}: cannot read it ({exc})") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise KitError(f"{path}: not valid JSON ({exc}); copy the kit again") from None
    _check(isinstance(manifest, dict) and manifest.get("format") == KIT_FORMAT, str(path),
           'a latlab kit manifest ({"format": "latlab-lut-kit", ...})', manifest if not isinstance(manifest, dict)
           else manifest.get("format"))
    kit_root = Path(kit).resolve()
    proto = manifest.get("protocol")
    _check(isinstance(proto, dict), f"{path}: protocol", "an object", proto)
    for k in ("rounds", "batch"):
        _check(_is_int(proto.get(k), 1), f"{path}: protocol.{k}", "an integer >= 1", proto.get(k))
    _check(_is_int(proto.get("warmup_rounds", 0)), f"{path}: protocol.warmup_rounds", "an integer >= 0",
           proto.get("warmup_rounds"))
    _check(proto.get("estimator", "p10") in ESTIMATORS, f"{path}: protocol.estimator",
           f"one of {', '.join(ESTIMATORS)}", proto.get("estimator"))
    for field, name_field in (("blocks", "key"), ("models", "name")):
        items = manifest.get(field, [] if field == "models" else None)
        _check(isinstance(items, list), f"{path}: {field}", "a list", items)
        for i, spec in enumerate(items):
            _check_item(kit_root, spec, f"{path}: {field}[{i}]", name_field)
    return manifest, text


def repair_tail(path):
    """Cut a truncated last line (a run killed mid-write); a copy of latlab.appendfile.repair_tail."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with open(path, "r+b") as fh:
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def append(out, records):
    """Append ``records`` as JSON lines in one write, after cutting a torn tail; fsynced."""
    repair_tail(out)
    fd = os.open(str(out), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, "".join(json.dumps(r) + "\n" for r in records).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_done(out):
    """The header, timed block keys and timed model names of a results file (a torn last line is skipped)."""
    header, keys, models = None, set(), set()
    if not out.exists():
        return header, keys, models
    lines = out.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                break
            raise KitError(f"{out}: line {i + 1} is corrupt; delete the file to start over") from None
        kind = rec.get("kind") if isinstance(rec, dict) else None
        if kind == "header":
            header = rec
        elif kind == "entry" and isinstance(rec.get("key"), str):
            keys.add(rec["key"])
        elif kind == "model" and isinstance(rec.get("name"), str):
            models.add(rec["name"])
    return header, keys, models


def positive_int(text):
    """argparse type: an integer >= 1 (0 threads, rounds or blocks is no measurement)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def main(argv=None):
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="Time a latlab board kit with ONNX Runtime (numpy + onnxruntime only).")
    ap.add_argument("--kit", type=Path, default=here, help="kit folder (default: this script's folder)")
    ap.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    ap.add_argument("--out", type=Path, default=None, help="results file (default KIT/results.jsonl)")
    ap.add_argument("--rounds", type=positive_int, default=None, help="rounds per batch (default: the kit's protocol)")
    ap.add_argument("--batch", type=positive_int, default=None, help="blocks per batch (default: the kit's protocol)")
    ap.add_argument("--limit", type=positive_int, default=None, help="time at most this many blocks in this run")
    ap.add_argument("--skip-models", action="store_true", help="do not time the calibration models")
    args = ap.parse_args(argv)

    try:
        return run(args)
    except KitError as exc:
        sys.exit(f"error: {exc}")


def run(args):
    """Time what ``args`` asks for (see ``main``); raises KitError on a bad kit or results file."""
    kit = args.kit
    manifest, manifest_text = read_manifest(kit)  # before anything is written
    for opt, value in (("--threads", args.threads), ("--rounds", args.rounds), ("--batch", args.batch),
                       ("--limit", args.limit)):
        if value is not None and value < 1:
            raise KitError(f"{opt}: expected an integer >= 1, got {value}")

    import onnxruntime as ort

    proto = dict(manifest["protocol"])
    if args.rounds:
        proto["rounds"] = args.rounds
    if args.batch:
        proto["batch"] = args.batch
    rounds, size, warmup = int(proto["rounds"]), int(proto["batch"]), int(proto.get("warmup_rounds", 3))
    estimator = proto.get("estimator", "p10")
    out = args.out or kit / "results.jsonl"
    sha = hashlib.sha256(manifest_text.encode()).hexdigest()
    header, done, done_models = read_done(out)
    if header is not None:
        same = (header.get("manifest_sha256") == sha and header.get("threads") == args.threads
                and header.get("protocol") == proto)
        if not same:
            raise KitError(f"{out} holds results for another kit, thread count or protocol; use another --out "
                           "or delete it")
        print(f"resuming: {len(done)} blocks and {len(done_models)} models already timed")
    else:
        append(out, [{"kind": "header", "format": RESULTS_FORMAT, "manifest_sha256": sha, "threads": args.threads,
                      "protocol": proto, "fingerprint": fingerprint(args.threads, ort),
                      "versions": {"python": platform.python_version(), "numpy": np.__version__,
                                   "onnxruntime": ort.__version__, "latlab": None, "torch": None},
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])

    todo = [b for b in manifest["blocks"] if b["key"] not in done]
    if args.limit is not None:
        todo = todo[:args.limit]
    total = len(manifest["blocks"])
    t_start = time.time()
    for start in range(0, len(todo), size):
        batch = todo[start:start + size]
        items = [Item(kit, b, ort, args.threads) for b in batch]
        samples = interleaved(items, rounds, warmup, seed=start)
        append(out, [dict({"kind": "entry", "key": b["key"]}, **stats(s, estimator))
                     for b, s in zip(batch, samples)])  # noqa: B905 (runs on Python 3.8+)
        done.update(b["key"] for b in batch)
        print(f"blocks {len(done)}/{total}  ({time.time() - t_start:.0f} s)", flush=True)

    models = [m for m in manifest.get("models", []) if m["name"] not in done_models]
    if models and not args.skip_models and len(done) == total:
        items = [Item(kit, m, ort, args.threads) for m in models]
        samples = interleaved(items, rounds, warmup, seed=0)
        append(out, [dict({"kind": "model", "name": m["name"]}, **stats(s, estimator))
                     for m, s in zip(models, samples)])  # noqa: B905 (runs on Python 3.8+)
        print(f"calibration models {len(models)} timed")
    left = total - len(done)
    if left:
        print(f"{left} blocks left: run the same command again to continue")
    else:
        print(f"done: copy {out} back and run `latlab lut import {out.name} --kit {kit.name} "
              "--out board.lut.json`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
