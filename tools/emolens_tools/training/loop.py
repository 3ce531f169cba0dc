"""Deterministic, resumable training on CPU (bf16 autocast where the CPU supports it)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from emolens import logs
from emolens_tools.training.augment import augment_batch
from emolens_tools.training.data import Split
from emolens_tools.training.model import build_network
from emolens_tools.training.tasks import TaskSpec

log = logging.getLogger(__name__)

# The committed teacher snapshots travel with the package source (not the wheel).
TEACHER_SNAPSHOTS = Path(str(files("emolens_tools.training") / "teachers"))


class CheckpointShapeError(ValueError):
    """A checkpoint holds a network of another shape than the recipe asks for."""


def shape_of(spec: TaskSpec) -> dict[str, list[int] | str]:
    shape: dict[str, list[int] | str] = {"channels": list(spec.channels), "reps": list(spec.reps)}
    if spec.arch != "vgg":  # checkpoints from before architectures were named are all vgg
        shape["arch"] = spec.arch
    return shape


def _describe(shape: dict) -> str:
    return " ".join(f"{key} {v if isinstance(v, str) else ','.join(map(str, v))}" for key, v in shape.items())


def check_checkpoint_shape(state: dict, spec: TaskSpec, path: Path) -> None:
    """Refuse ``state`` (a ``last.pt``) when it was trained with another network shape.

    Checkpoints written before the shape was recorded carry none and pass.
    """
    saved, wanted = state.get("shape"), shape_of(spec)
    if saved is not None and saved != wanted:
        raise CheckpointShapeError(
            f"{path} was trained with {_describe(saved)}, but this run asks for {_describe(wanted)}"
        )


def half_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def full_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def write_snapshot(state_path: Path, best_path: Path, snapshot: Path) -> None:
    """Pack a run's ``last.pt`` and ``best.pt`` into one small file meant to be committed.

    Weights are stored in fp16 (half the size; training runs in bf16 autocast anyway) and the
    optimizer's momentum is left out: a warm start rebuilds it within a few hundred steps.
    """
    state = torch.load(state_path, weights_only=False)
    packed = {key: state[key] for key in ("epoch", "best_acc", "best_epoch", "history", "shape")}
    packed["model"] = half_weights(state["model"])
    packed["best_model"] = half_weights(torch.load(best_path))
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = snapshot.with_suffix(".tmp")
    torch.save(packed, tmp)
    tmp.replace(snapshot)  # never leave a half-written file for git to pick up


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation: the loss mixes the hard labels with a teacher's soft targets.

    ``loss = (1 - weight) * CE(student, label) + weight * T^2 * KL(teacher_T || student_T)``,
    where ``_T`` is a softmax at temperature ``temperature`` (Hinton et al., 2015). The teacher
    sees exactly the augmented batch the student sees; with ``source_view``, where the student
    sees a face re-cut as the pipeline cuts it, the teacher reads the face as the dataset cut it
    under the same augmentation, so the student learns to answer for a re-cut face what the
    teacher answers for the well-cut one.
    """

    teacher: nn.Module
    temperature: float = 4.0
    weight: float = 0.7
    source_view: bool = False

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(student_logits / t, dim=1),
            nn.functional.log_softmax(teacher_logits / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - self.weight) * hard + self.weight * t * t * soft


@dataclass(frozen=True)
class PartialLabels:
    """Faces of another dataset that carry part of a label: only whether each shows ``target``.

    SMILEsmileD's faces (other people, other cameras than FER2013) say smile or no smile; a smile
    is read as happy and no smile as "anything but happy". Each training batch gets ``per_batch``
    of them, augmented like the rest: a positive adds ``-log p(target)`` to the loss, a negative
    ``-log(1 - p(target))``, each times its weight (``weights``: the label audit's, else 1).
    """

    images: np.ndarray  # uint8 [N, H, W] at the task's input size
    is_target: np.ndarray  # bool [N]
    target: int
    per_batch: int = 32
    weights: np.ndarray | None = None  # float32 [N]

    def loss(self, logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
        """Per-image loss for logits [N, C] of these faces."""
        log_p = nn.functional.log_softmax(logits.float(), dim=1)[:, self.target]
        # log(1 - p) computed from log p without cancellation when p is near 1.
        log_not = torch.log(-torch.expm1(log_p.clamp(max=-1e-6)))
        return torch.where(is_target, -log_p, -log_not)


def load_teacher(snapshot: Path, spec: TaskSpec, best: bool = True) -> TrainResult:
    """The teacher network of a committed snapshot (its best epoch by default), in eval mode,
    with the best epoch, its val accuracy and the history the snapshot carries."""
    state = torch.load(snapshot, weights_only=False)
    check_checkpoint_shape(state, spec, snapshot)
    model = build_network(spec)
    model.load_state_dict(full_weights(state["best_model" if best else "model"]))
    return TrainResult(model.eval(), int(state["best_epoch"]), float(state["best_acc"]), state["history"])


def init_from(model: nn.Module, source: nn.Module) -> list[str]:
    """Copy ``source``'s weights into ``model`` wherever name and shape match (a pretrained
    backbone under a head for other classes); returns the names left as they were."""
    mine, theirs = model.state_dict(), source.state_dict()
    fits = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    model.load_state_dict({**mine, **{k: v.to(mine[k].dtype) for k, v in fits.items()}})
    left = sorted(set(mine) - set(fits))
    logs.event(log.info, "init_from", copied=len(fits), left=",".join(left) or "-")
    return left


@dataclass
class TrainResult:
    model: nn.Module
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]]


def _lr_at(spec: TaskSpec, epoch: int, step: int, steps: int, epochs: int) -> float:
    """Linear warm-up for one epoch, then cosine decay to zero."""
    t = (epoch + step / steps) / epochs
    warm = 1.0 / epochs
    if t < warm:
        return spec.lr * t / warm
    return spec.lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits for uint8 [N, H, W] images, no augmentation (on the device the model is on)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size].astype(np.float32)[:, None]).to(device)
        out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def train(
    spec: TaskSpec,
    train_split: Split,
    val_split: Split,
    workdir: Path,
    *,
    epochs: int | None = None,
    max_batches: int | None = None,
    seed: int = 20261129,
    bf16: bool = True,
    progress: bool = True,
    views: np.ndarray | None = None,
    view_share: float = 0.0,
    snapshot: Path | None = None,
    device: str = "cpu",
    distill: Distillation | None = None,
    init: nn.Module | None = None,
    sample_weights: np.ndarray | None = None,
    partial: PartialLabels | None = None,
) -> TrainResult:
    """Train ``spec`` and return the model of the best validation epoch.

    Each epoch ends with a checkpoint in ``workdir``; a later call with the same arguments
    resumes from it, and one that asks for another network shape raises
    :class:`CheckpointShapeError`. Every epoch draws its shuffles and augmentations from
    ``(seed, epoch)``, so a resumed run repeats what an unbroken run would have done.
    With ``snapshot`` (a committed file, see :func:`write_snapshot`), a run without a checkpoint
    in ``workdir`` warm-starts from it (weights, epoch, history; fresh momentum), and every
    epoch rewrites it, so that a new machine continues where the last one stopped.
    With ``views`` (the training crops re-cut as the pipeline would, same order), each image
    of a batch is replaced by its view with probability ``view_share``. With ``distill`` the
    loss also follows a teacher's soft targets (see :class:`Distillation`). With ``init`` a run
    without a checkpoint starts from that network's weights wherever the shapes fit
    (:func:`init_from`). ``sample_weights`` (one per training image) weight each image's
    hard-label loss, so that suspected label noise counts less (emolens_tools.training.noise).
    With ``partial`` each batch also holds faces of another dataset that carry part of a
    label (see :class:`PartialLabels`); accuracy in the history counts the main split only.
    """
    epochs = epochs or spec.epochs
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_network(spec)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=spec.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing, reduction="none")
    state_path, best_path = workdir / "last.pt", workdir / "best.pt"
    start, best_acc, best_epoch, history = 0, -1.0, -1, []
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        check_checkpoint_shape(state, spec, state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best_acc, best_epoch, history = (
            state["epoch"] + 1,
            state["best_acc"],
            state["best_epoch"],
            state["history"],
        )
        logs.event(log.info, "resume", task=spec.name, epoch=start, best_val_acc=round(best_acc, 4))
    elif snapshot is not None and snapshot.exists():
        state = torch.load(snapshot, weights_only=False)
        check_checkpoint_shape(state, spec, snapshot)
        model.load_state_dict(full_weights(state["model"]))
        torch.save(full_weights(state["best_model"]), best_path)
        start, best_acc, best_epoch, history = (
            state["epoch"] + 1,
            state["best_acc"],
            state["best_epoch"],
            state["history"],
        )
        logs.event(
            log.info, "warm_start", task=spec.name, **{"from": snapshot}, epoch=start, best_val_acc=round(best_acc, 4)
        )
    elif init is not None:
        init_from(model, init)

    model.to(device)
    if distill is not None:
        distill.teacher.to(device).eval()
    if start > 0:  # the optimizer's state was loaded for CPU tensors
        optimizer.load_state_dict(optimizer.state_dict())
    n = len(train_split.images)
    steps = n // spec.batch_size
    if max_batches is not None:
        steps = min(steps, max_batches)
    for epoch in range(start, epochs):
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(seed * 1000 + epoch)
        order = rng.permutation(n)
        model.train()
        t0, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        bar = tqdm(range(steps), desc=f"{spec.name} {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for step in bar:
            idx = order[step * spec.batch_size : (step + 1) * spec.batch_size]
            source = original = train_split.images[idx]
            if views is not None and view_share > 0:
                use = rng.random(len(idx)) < view_share
                source = np.where(use[:, None, None], views[idx], source)
            w_np = np.ones(len(idx), np.float32) if sample_weights is None else sample_weights[idx].astype(np.float32)
            if partial is not None:
                pidx = rng.integers(0, len(partial.images), partial.per_batch)
                source = np.concatenate([source, partial.images[pidx]])
                original = np.concatenate([original, partial.images[pidx]])
                pw = np.ones(len(pidx), np.float32) if partial.weights is None else partial.weights[pidx]
                w_np = np.concatenate([w_np, pw.astype(np.float32)])
            x_teacher = None
            if distill is not None and distill.source_view and views is not None and view_share > 0:
                # the same draws augment the source crops the same way (they depend on shapes only)
                x_teacher = torch.from_numpy(augment_batch(original, copy.deepcopy(rng))).to(device)
            x = torch.from_numpy(augment_batch(source, rng)).to(device)
            y = torch.from_numpy(train_split.labels[idx]).to(device)
            w = torch.from_numpy(w_np).to(device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(spec, epoch, step, steps, epochs)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                all_logits = model(x)
                logits = all_logits[: len(idx)]
                per_image = loss_fn(logits.float(), y)
                if partial is not None:
                    is_target = torch.from_numpy(partial.is_target[pidx]).to(device)
                    per_image = torch.cat([per_image, partial.loss(all_logits[len(idx) :], is_target)])
                loss = (per_image * w).sum() / w.sum()
                if distill is not None:
                    with torch.no_grad():
                        teacher_logits = distill.teacher(x if x_teacher is None else x_teacher).float()
                    loss = distill.loss(all_logits.float(), teacher_logits, loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        val_logits = predict_logits(model, val_split.images)
        val_acc = float((val_logits.argmax(1) == val_split.labels).mean())
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "val_acc": val_acc,
            "seconds": time.time() - t0,
        }
        history.append(row)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch + 1
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, best_path)
        torch.save(
            {
                "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best_acc": best_acc,
                "best_epoch": best_epoch,
                "history": history,
                "shape": shape_of(spec),
            },
            state_path,
        )
        if snapshot is not None:
            write_snapshot(state_path, best_path, snapshot)
        msg = (
            f"{spec.name} epoch {epoch + 1}/{epochs} loss={row['train_loss']:.4f} "
            f"train_acc={row['train_acc']:.4f} val_acc={val_acc:.4f} best={best_acc:.4f}@{best_epoch} "
            f"{row['seconds']:.0f}s"
        )
        tqdm.write(msg) if progress else log.info(msg)
    model.load_state_dict(torch.load(best_path))
    model.cpu().eval()
    return TrainResult(model=model, best_epoch=best_epoch, best_val_accuracy=best_acc, history=history)
