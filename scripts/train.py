"""Train one model on the shared data and export it to model_repository/.

    python scripts/train.py --task smile
    python scripts/train.py --task emotion --workdir /tmp/emolens-train   # resumes if interrupted

Uses the ``train`` split to fit and the ``val`` split to pick the best epoch; never the ``test`` split.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emolens.training.data import DatasetMissingError, load_split
from emolens.training.export import export
from emolens.training.loop import TrainResult, train
from emolens.training.model import FaceNet
from emolens.training.tasks import TASKS
from emolens.vision.align import measure_template
from emolens.vision.detect import make_detector

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--workdir", type=Path, help="checkpoints (default ~/.cache/emolens/train/TASK)")
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository", help="where to export")
    parser.add_argument("--data-dir", type=Path, help="folder with the .npz files (default ../shared/data)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke runs)")
    parser.add_argument("--limit", type=int, help="use only the first N training images (smoke runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--export-only", action="store_true", help="export the best checkpoint in --workdir without training"
    )
    parser.add_argument("--template-images", type=int, default=600, help="training crops used to measure the template")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    spec = TASKS[args.task]
    torch.set_num_threads(args.threads)
    workdir = args.workdir or Path.home() / ".cache" / "emolens" / "train" / spec.name
    try:
        tr = load_split(spec, "train", args.data_dir)
        va = load_split(spec, "val", args.data_dir)
    except DatasetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        tr = type(tr)(tr.images[: args.limit], tr.labels[: args.limit])
        va = type(va)(va.images[: args.limit], va.labels[: args.limit])
    print(f"{spec.name}: {len(tr.images)} train / {len(va.images)} val images, workdir {workdir}", flush=True)
    t0 = time.time()
    if args.export_only:
        model = FaceNet(spec)
        model.load_state_dict(torch.load(workdir / "best.pt"))
        history = torch.load(workdir / "last.pt", weights_only=False)["history"]
        best = max(history, key=lambda r: r["val_acc"])
        result = TrainResult(model.eval(), int(best["epoch"]), float(best["val_acc"]), history)
    else:
        result = train(
            spec,
            tr,
            va,
            workdir,
            epochs=args.epochs,
            max_batches=args.max_batches,
            seed=args.seed,
            bf16=not args.no_bf16,
            progress=not args.no_progress,
        )
    rng = np.random.default_rng(args.seed)
    crops = tr.images[rng.choice(len(tr.images), min(args.template_images, len(tr.images)), replace=False)]
    template, found = measure_template(list(crops), make_detector("blazeface"), upscale=192 // spec.size)
    print(f"crop template measured on {len(crops)} training crops (face found in {found:.0%}): {template.tolist()}")
    meta = {
        "task": spec.name,
        "template_found_fraction": round(found, 3),
        "epochs": args.epochs or spec.epochs,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": round(result.best_val_accuracy, 4),
        "train_images": len(tr.images),
        "seed": args.seed,
        "history": result.history,
    }
    diff = export(result.model, spec, args.repo, va.images[:64], template, meta)
    print(
        f"exported {args.repo / spec.name} (best epoch {result.best_epoch}, val acc "
        f"{result.best_val_accuracy:.4f}, onnx-vs-torch max diff {diff:.1e}) in {time.time() - t0:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
