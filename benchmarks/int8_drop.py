"""mAP drop after conversion per model: the seed ShuffleNetV2 detector, yolov5n and the MobileNetV3 detector,
trained on the built-in data with the quick start's search protocol, then evaluated in eager torch FP32 and
through every installed INT8 backend (and ONNX Runtime FP32 as a control: its drop should be ~0).

    python benchmarks/int8_drop.py [--epochs 4] [--n-train 2000] [--n-val 200] [--imgsz 64]
                                   [--out results/int8-drop] [--backends onnxruntime,onnxruntime-int8]

Each model trains into ``<out>/runs/<model>/`` (an existing ``last.pt`` there is loaded, not retrained; point
``--runs`` at another folder of ``latlab train`` runs to reuse them). INT8 backends calibrate on the training
split (``latlab.detection.converted``). Writes ``<out>/int8_drop.csv`` and prints the table: model, backend,
precision, mAP50-95, mAP50 and the drop against torch FP32 (in mAP points of [0, 1], positive = worse).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from latlab.detection.converted import ConversionDrop, conversion_drops, installed_backends
from latlab.detection.data import load_dataset
from latlab.detection.evaluate import load_detector
from latlab.detection.train import train
from latlab.quickstart import QuickstartSettings

MODELS = ("yolov5s-shufflenetv2", "yolov5n", "yolov5s-mobilenetv3-small")
CONTROL = "onnxruntime"


def trained(name: str, runs: Path, data, *, imgsz: int, epochs: int, batch: int, seed: int):
    """``name`` trained on ``data`` into ``runs/name`` (or loaded from its ``last.pt`` when it exists)."""
    last = runs / name / "last.pt"
    if last.is_file():
        model, _ = load_detector(name, last, data, imgsz=imgsz)
        return model
    return train(name, data=data, epochs=epochs, imgsz=imgsz, batch=batch, out_dir=runs / name, seed=seed,
                 progress=False).model


def main() -> None:
    q = QuickstartSettings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--backends", default=None,
                    help=f"Comma list (default: {CONTROL} and every installed INT8 backend).")
    ap.add_argument("--preset", default=q.data_preset)
    ap.add_argument("--imgsz", type=int, default=q.search_imgsz)
    ap.add_argument("--epochs", type=int, default=q.train_epochs)
    ap.add_argument("--n-train", type=int, default=q.n_train)
    ap.add_argument("--n-val", type=int, default=q.n_val)
    ap.add_argument("--batch", type=int, default=16, help="Training batch.")
    ap.add_argument("--seed", type=int, default=q.seed)
    ap.add_argument("--threads", type=int, default=1, help="Backend threads while evaluating.")
    ap.add_argument("--out", type=Path, default=Path("results/int8-drop"))
    ap.add_argument("--runs", type=Path, default=None, help="Training runs folder (default <out>/runs).")
    args = ap.parse_args()
    backends = (args.backends.split(",") if args.backends
                else [CONTROL, *installed_backends("int8")])
    data = load_dataset("builtin", imgsz=args.imgsz, n_train=args.n_train, n_val=args.n_val,
                        preset=args.preset, seed=args.seed)
    runs = args.runs or args.out / "runs"
    rows: list[ConversionDrop] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        model = trained(name, runs, data, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, seed=args.seed)
        rows += conversion_drops(name, model, data, backends, imgsz=args.imgsz, threads=args.threads)
        table = pd.DataFrame([asdict(r) for r in rows])
        table.to_csv(args.out / "int8_drop.csv", index=False)  # after every model: a killed run keeps them
    protocol = {"preset": args.preset, "imgsz": args.imgsz, "epochs": args.epochs, "n_train": args.n_train,
                "n_val": args.n_val, "batch": args.batch, "seed": args.seed, "threads": args.threads}
    (args.out / "int8_drop.json").write_text(json.dumps(protocol, indent=2))
    shown = table[["model", "backend", "precision", "map", "map50", "drop", "drop50", "runtime", "error"]].rename(
        columns={"map": "mAP50-95", "map50": "mAP50"})
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"written: {args.out / 'int8_drop.csv'}")


if __name__ == "__main__":
    main()
