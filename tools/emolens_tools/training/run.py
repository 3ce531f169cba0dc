"""Train one model and export it: the code behind ``python scripts/train.py`` (its usage and
flags: :mod:`emolens_tools.training.options`). ``python -m emolens_tools.training.run`` runs the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emolens.vision.detect import make_detector
from emolens_tools.training.canvas import measure_crop_box
from emolens_tools.training.crops import serving_views
from emolens_tools.training.data import DatasetMissingError, Split, load_split, resized
from emolens_tools.training.export import export
from emolens_tools.training.loop import (
    TEACHER_SNAPSHOTS,
    CheckpointShapeError,
    Distillation,
    PartialLabels,
    TrainResult,
    check_checkpoint_shape,
    load_teacher,
    predict_logits,
    shape_of,
    train,
)
from emolens_tools.training.model import Ensemble, build_network
from emolens_tools.training.noise import audit, embed
from emolens_tools.training.options import build_parser
from emolens_tools.training.tasks import TASKS, TEACHERS, TaskSpec, member_spec

UPSCALE_TO = 192  # side in frame pixels at which training crops are shown to the detector


def member_dir(root: Path, spec: TaskSpec, k: int) -> Path:
    return root / (spec.name if k == 0 else f"{spec.name}-m{k}")


def with_run_shape(args: argparse.Namespace, spec: TaskSpec) -> TaskSpec:
    """``spec`` with the run's --channels/--reps/--lr, where given, on top."""
    return dataclasses.replace(
        spec, channels=args.channels or spec.channels, reps=args.reps or spec.reps, lr=args.lr or spec.lr
    )


def net_specs(args: argparse.Namespace, spec: TaskSpec) -> list[TaskSpec]:
    """Each member's recipe (its own shape and schedule), with the run's --channels/--reps/--lr on top."""
    return [with_run_shape(args, member_spec(spec, member)) for member in spec.members]


def load_member(workdir: Path, spec: TaskSpec) -> TrainResult:
    state = torch.load(workdir / "last.pt", weights_only=False)
    check_checkpoint_shape(state, spec, workdir / "last.pt")
    model = build_network(spec)
    model.load_state_dict(torch.load(workdir / "best.pt"))
    history = state["history"]
    best = max(history, key=lambda r: r["val_acc"])
    return TrainResult(model.eval(), int(best["epoch"]), float(best["val_acc"]), history)


def committed_teacher(spec: TaskSpec, snapshot: Path | None = None) -> TrainResult:
    """The best network of ``spec.teacher``'s committed snapshot, with the figures it carries."""
    if spec.teacher is None:
        raise ValueError(f"the {spec.name} recipe names no teacher")
    return load_teacher(snapshot or TEACHER_SNAPSHOTS / f"{spec.teacher}.pt", TEACHERS[spec.teacher])


def suspect_weights(spec: TaskSpec, teacher: torch.nn.Module, tr: Split, cache: Path) -> np.ndarray:
    """Per-image loss weights: ``spec.suspect_weight`` where the label-noise audit contradicts the
    label, 1 elsewhere. The audit is cached beside the checkpoints (it is deterministic)."""
    if cache.exists():
        with np.load(cache) as saved:
            suspect = saved["suspect"]
    else:
        result = audit(embed(teacher, tr.images), tr.labels, len(spec.classes))
        suspect = result.suspect
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, suspect=suspect, p_label=result.p_label)
    if len(suspect) != len(tr.labels):
        raise ValueError(f"{cache} audits {len(suspect)} images, the training split has {len(tr.labels)}")
    print(
        f"label audit: {int(suspect.sum())} of {len(suspect)} training labels contradicted out of fold, "
        f"weighted {spec.suspect_weight}"
    )
    return np.where(suspect, spec.suspect_weight, 1.0).astype(np.float32)


def partial_labels(
    spec: TaskSpec, teacher: torch.nn.Module | None, root: Path, data: Path | None, limit: int | None
) -> PartialLabels:
    """``spec.partial_task``'s training faces at ``spec``'s input size, as partial labels of
    ``spec.partial_class``: its class ``spec.partial_source_class`` (default: its positive, last
    class) implies it, any other class rules it out. Its own label audit (when its recipe
    down-weights suspects) weights them the same way."""
    if spec.partial_task is None or spec.partial_class is None:
        raise ValueError(f"the {spec.name} recipe names no partial_task / partial_class")
    other = TASKS[spec.partial_task]
    tr = load_split(other, "train", data)
    if limit:
        tr = Split(tr.images[:limit], tr.labels[:limit])
    weights = None
    if other.suspect_weight < 1.0 and teacher is not None:
        weights = suspect_weights(other, teacher, tr, root / f"{other.name}-audit.npz")
    source_class = spec.partial_source_class or other.classes[-1]
    is_target = tr.labels == other.classes.index(source_class)
    print(
        f"partial labels: {len(tr.labels)} {other.name} training faces, {int(is_target.sum())} ({source_class}) "
        f"read as {spec.partial_class}, the rest as not {spec.partial_class}"
    )
    return PartialLabels(
        resized(tr.images, spec.size),
        is_target,
        spec.classes.index(spec.partial_class),
        spec.partial_per_batch,
        weights,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)  # its quantiser logs every export step

    if args.teacher and args.task not in TEACHERS:
        teachers = ", ".join(sorted(TEACHERS))
        print(f"error: no teacher recipe for {args.task}; teachers exist for {teachers}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} asked for, but this torch build sees no CUDA device", file=sys.stderr)
        return 2
    spec = with_run_shape(args, TEACHERS[args.task]) if args.teacher else TASKS[args.task]
    if args.suspect_weight is not None:
        spec = dataclasses.replace(spec, suspect_weight=args.suspect_weight)
    for net in [spec] if args.teacher else net_specs(args, spec):
        if len(net.channels) != len(net.reps):
            print(f"error: {len(net.channels)} widths but {len(net.reps)} repeat counts", file=sys.stderr)
            return 2
    if args.member is not None and not 0 <= args.member < len(spec.members):
        print(f"error: {spec.name} has members 0..{len(spec.members) - 1}, not {args.member}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    root = args.workdir or Path.home() / ".cache" / "emolens" / "train"
    try:
        tr = load_split(spec, "train", args.data_dir)
        va = load_split(spec, "val", args.data_dir)
    except DatasetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        tr = Split(tr.images[: args.limit], tr.labels[: args.limit])
        va = Split(va.images[: args.limit], va.labels[: args.limit])
    if len(tr.images) < spec.batch_size:
        print(
            f"error: {len(tr.images)} training images are fewer than one batch of {spec.batch_size}: "
            "nothing would be trained (raise --limit)",
            file=sys.stderr,
        )
        return 2
    try:
        if args.teacher:
            return train_teacher(args, spec, root, tr, va)
        return train_and_export(args, spec, root, tr, va)
    except CheckpointShapeError as exc:
        print(f"error: {exc}; pass that run's --channels/--reps, or use another --workdir", file=sys.stderr)
        return 2


def train_teacher(args: argparse.Namespace, spec: TaskSpec, root: Path, tr: Split, va: Split) -> int:
    """Train (or continue) the task's teacher; it stays in its checkpoint and snapshot."""
    snapshot = args.snapshot or TEACHER_SNAPSHOTS / f"{spec.name}.pt"
    workdir = root / f"{spec.name}-teacher"
    print(f"{spec.name} teacher: {len(tr.images)} train / {len(va.images)} val images, checkpoints in {workdir}")
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
        snapshot=snapshot,
        device=args.device,
    )
    print(f"{spec.name} teacher: best val {result.best_val_accuracy:.4f} at epoch {result.best_epoch}; {snapshot}")
    return 0


def _measure_crop_box(tr: Split, seed: int, template_images: int, upscale: int) -> tuple[np.ndarray, float]:
    """Where the detector finds the face in the training crops (and in what share of them)."""
    rng = np.random.default_rng(seed)
    crops = tr.images[rng.choice(len(tr.images), min(template_images, len(tr.images)), replace=False)]
    box, found = measure_crop_box(list(crops), make_detector("blazeface"), upscale=upscale)
    where = box.round(2).tolist()
    print(f"crop box measured on {len(crops)} training crops (face found in {found:.0%}): {where}")
    return box, found


def _train_member(
    args: argparse.Namespace,
    spec: TaskSpec,
    k: int,
    net: TaskSpec,
    root: Path,
    data: tuple[Split, Split],
    teacher: TrainResult | None,
    extra: tuple[np.ndarray | None, PartialLabels | None],
    crop_box: Callable[[], tuple[np.ndarray, float]],
) -> TrainResult:
    """Train (or resume) member ``k`` of the ensemble: its serving views cut first where it
    trains on them; ``extra`` holds the label audit's sample weights and the partial labels."""
    tr, va = data
    weights, partial = extra
    member = spec.members[k]
    workdir = member_dir(root, spec, k)
    views = None
    if member.serving_view_share > 0:
        views, hit = serving_views(
            tr.images,
            crop_box()[0],
            UPSCALE_TO // spec.size,
            seed=args.seed + member.seed_offset,
            cache=workdir / "serving_views.npz",
            workers=args.threads,
            progress=not args.no_progress,
        )
        print(f"member {k}: serving views of {len(views)} training crops (face found in {hit.mean():.1%})")
    return train(
        net,
        tr,
        va,
        workdir,
        epochs=args.epochs,
        max_batches=args.max_batches,
        seed=args.seed + member.seed_offset,
        bf16=not args.no_bf16,
        progress=not args.no_progress,
        views=views,
        view_share=member.serving_view_share,
        device=args.device,
        distill=Distillation(teacher.model, spec.temperature, spec.kd_weight, member.teacher_reads_source)
        if member.distill and teacher
        else None,
        init=teacher.model if member.init_from_teacher and teacher else None,
        sample_weights=weights,
        partial=partial if member.partial_labels else None,
    )


def _export_meta(
    args: argparse.Namespace,
    spec: TaskSpec,
    nets: list[TaskSpec],
    results: dict[int, TrainResult],
    train_images: int,
    val_acc: float,
    found: float,
) -> dict[str, Any]:
    """What training.json records beside the exported ensemble."""
    return {
        "task": spec.name,
        "crop_box_found_fraction": round(found, 3),
        "epochs": args.epochs or spec.epochs,
        # Member 0's shape, as the checkpoints record it; each member also records its own (load_pytorch).
        **shape_of(nets[0]),
        "train_images": train_images,
        "seed": args.seed,
        "val_accuracy": round(val_acc, 4),
        "flip_tta": spec.flip_tta,
        "teacher": spec.teacher,
        "suspect_weight": spec.suspect_weight,
        "members": [
            {
                **dataclasses.asdict(spec.members[k]),
                "shape": {"arch": nets[k].arch, **shape_of(nets[k])},
                "epochs": args.epochs or nets[k].epochs,
                "lr": nets[k].lr,
                "seed": args.seed + spec.members[k].seed_offset,
                "best_epoch": results[k].best_epoch,
                "best_val_accuracy": round(results[k].best_val_accuracy, 4),
                "history": results[k].history,
            }
            for k in range(len(spec.members))
        ],
    }


def train_and_export(args: argparse.Namespace, spec: TaskSpec, root: Path, tr: Split, va: Split) -> int:
    """Train the requested members (resuming their checkpoints) and export once all have one."""
    print(f"{spec.name}: {len(tr.images)} train / {len(va.images)} val images, checkpoints in {root}", flush=True)
    t0 = time.time()
    # measured once, when a serving view or the export first needs it (a run that only trains
    # needs no face detector)
    crop_box = functools.cache(
        functools.partial(_measure_crop_box, tr, args.seed, args.template_images, UPSCALE_TO // spec.size)
    )
    nets = net_specs(args, spec)
    todo = [args.member] if args.member is not None else list(range(len(spec.members)))
    trained = [k for k, m in enumerate(spec.members) if m.source == "train"]
    uses_teacher = any(m.source == "teacher" or m.init_from_teacher or m.distill for m in spec.members)
    teacher = committed_teacher(spec, args.snapshot) if uses_teacher else None
    results: dict[int, TrainResult] = {}
    weights = None
    if spec.suspect_weight < 1.0 and teacher is not None and not args.export_only:
        weights = suspect_weights(spec, teacher.model, tr, root / f"{spec.name}-audit.npz")
    partial = None
    if not args.export_only and any(spec.members[k].partial_labels for k in todo):
        partial = partial_labels(spec, teacher.model if teacher else None, root, args.data_dir, args.limit)
    if not args.export_only:
        for k in todo:
            if spec.members[k].source != "teacher":
                results[k] = _train_member(
                    args, spec, k, nets[k], root, (tr, va), teacher, (weights, partial), crop_box
                )
    missing = [k for k in trained if not (member_dir(root, spec, k) / "best.pt").exists()]
    if missing:
        print(f"not exported yet: train member(s) {missing} first (--member K), then rerun with --export-only")
        return 0 if not args.export_only else 2
    for k, member in enumerate(spec.members):
        if member.source == "teacher" and teacher is not None:
            results[k] = teacher
        elif k not in results:
            results[k] = load_member(member_dir(root, spec, k), nets[k])
    model = Ensemble(
        [results[k].model for k in range(len(spec.members))],
        flip=spec.flip_tta,
        weights=[member.weight for member in spec.members],
    ).eval()
    with torch.no_grad():
        val_acc = float((predict_logits(model, va.images).argmax(1) == va.labels).mean())
    meta = _export_meta(args, spec, nets, results, len(tr.images), val_acc, crop_box()[1])
    calibration = tr.images[np.random.default_rng(args.seed + 1).choice(len(tr.images), min(512, len(tr.images)))]
    check = export(model, spec, args.repo, va.images[:512], crop_box()[0], meta, calibration, quantize=not args.fp32)
    print(
        f"exported {args.repo / spec.name}: {len(spec.members)} network(s), flip {spec.flip_tta}, "
        f"val acc {val_acc:.4f} (fp32), "
        f"{check} in {time.time() - t0:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
