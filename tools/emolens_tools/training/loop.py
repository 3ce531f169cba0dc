"""Deterministic, resumable training on CPU (bf16 autocast where the CPU supports it)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class _Recipe:
    """What :func:`train` was asked for beyond the task and its data, handed to its steps."""

    seed: int
    bf16: bool
    progress: bool
    device: str
    views: np.ndarray | None
    view_share: float
    distill: Distillation | None
    sample_weights: np.ndarray | None
    partial: PartialLabels | None


@dataclass
class _Standing:
    """Where a run stands: the next epoch, the best validation accuracy so far and its epoch, the
    history of the epochs done."""

    start: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def of(cls, state: dict) -> _Standing:
        return cls(state["epoch"] + 1, state["best_acc"], state["best_epoch"], state["history"])


@dataclass
class _Batch:
    """One training batch on the device: ``n`` faces of the main split first, then the partially
    labelled ones (``is_target``), each with its loss weight; ``x_teacher`` is what the teacher
    reads instead of ``x`` (the dataset crops, with ``source_view``)."""

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    n: int
    x_teacher: torch.Tensor | None
    is_target: torch.Tensor | None


def _start(
    spec: TaskSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    workdir: Path,
    snapshot: Path | None,
    init: nn.Module | None,
) -> _Standing:
    """Resume from ``workdir``'s checkpoint, else warm-start from ``snapshot``, else copy
    ``init``'s fitting weights, else start afresh."""
    state_path, best_path = workdir / "last.pt", workdir / "best.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        check_checkpoint_shape(state, spec, state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        standing = _Standing.of(state)
        logs.event(log.info, "resume", task=spec.name, epoch=standing.start, best_val_acc=round(standing.best_acc, 4))
        return standing
    if snapshot is not None and snapshot.exists():
        state = torch.load(snapshot, weights_only=False)
        check_checkpoint_shape(state, spec, snapshot)
        model.load_state_dict(full_weights(state["model"]))
        torch.save(full_weights(state["best_model"]), best_path)
        standing = _Standing.of(state)
        logs.event(
            log.info,
            "warm_start",
            task=spec.name,
            **{"from": snapshot},
            epoch=standing.start,
            best_val_acc=round(standing.best_acc, 4),
        )
        return standing
    if init is not None:
        init_from(model, init)
    return _Standing()


def _draw_batch(idx: np.ndarray, train_split: Split, rng: np.random.Generator, recipe: _Recipe) -> _Batch:
    """The batch of training images ``idx``: views swapped in, partially labelled faces added,
    augmented, in the order of draws from ``rng`` that makes a resumed run repeat an unbroken one."""
    source = original = train_split.images[idx]
    views, share, partial = recipe.views, recipe.view_share, recipe.partial
    if views is not None and share > 0:
        use = rng.random(len(idx)) < share
        source = np.where(use[:, None, None], views[idx], source)
    weights = recipe.sample_weights
    w_np = np.ones(len(idx), np.float32) if weights is None else weights[idx].astype(np.float32)
    is_target = None
    if partial is not None:
        pidx = rng.integers(0, len(partial.images), partial.per_batch)
        source = np.concatenate([source, partial.images[pidx]])
        original = np.concatenate([original, partial.images[pidx]])
        pw = np.ones(len(pidx), np.float32) if partial.weights is None else partial.weights[pidx]
        w_np = np.concatenate([w_np, pw.astype(np.float32)])
        is_target = torch.from_numpy(partial.is_target[pidx]).to(recipe.device)
    x_teacher = None
    if recipe.distill is not None and recipe.distill.source_view and views is not None and share > 0:
        # the same draws augment the source crops the same way (they depend on shapes only)
        x_teacher = torch.from_numpy(augment_batch(original, copy.deepcopy(rng))).to(recipe.device)
    x = torch.from_numpy(augment_batch(source, rng)).to(recipe.device)
    y = torch.from_numpy(train_split.labels[idx]).to(recipe.device)
    return _Batch(x, y, torch.from_numpy(w_np).to(recipe.device), len(idx), x_teacher, is_target)


def _batch_loss(
    model: nn.Module, batch: _Batch, loss_fn: nn.Module, recipe: _Recipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's weighted loss (hard labels, partial labels, the teacher's soft targets) and the
    logits of its main-split faces."""
    with torch.autocast(torch.device(recipe.device).type, dtype=torch.bfloat16, enabled=recipe.bf16):
        all_logits = model(batch.x)
        logits = all_logits[: batch.n]
        per_image = loss_fn(logits.float(), batch.y)
        if recipe.partial is not None and batch.is_target is not None:
            per_image = torch.cat([per_image, recipe.partial.loss(all_logits[batch.n :], batch.is_target)])
        loss = (per_image * batch.w).sum() / batch.w.sum()
        if recipe.distill is not None:
            with torch.no_grad():
                teacher_logits = recipe.distill.teacher(batch.x if batch.x_teacher is None else batch.x_teacher).float()
            loss = recipe.distill.loss(all_logits.float(), teacher_logits, loss)
    return loss, logits


def _train_epoch(
    spec: TaskSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train_split: Split,
    epoch: int,
    epochs: int,
    steps: int,
    recipe: _Recipe,
) -> dict[str, float]:
    """One epoch over ``steps`` batches: its history row so far (epoch, train loss and accuracy)."""
    rng = np.random.default_rng([recipe.seed, epoch])
    torch.manual_seed(recipe.seed * 1000 + epoch)
    order = rng.permutation(len(train_split.images))
    model.train()
    seen, correct, loss_sum = 0, 0, 0.0
    bar = tqdm(range(steps), desc=f"{spec.name} {epoch + 1}/{epochs}", disable=not recipe.progress, leave=False)
    for step in bar:
        idx = order[step * spec.batch_size : (step + 1) * spec.batch_size]
        batch = _draw_batch(idx, train_split, rng, recipe)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(spec, epoch, step, steps, epochs)
        loss, logits = _batch_loss(model, batch, loss_fn, recipe)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(idx)
        correct += int((logits.argmax(1) == batch.y).sum())
        loss_sum += float(loss.detach()) * len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}


def _end_epoch(
    spec: TaskSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    row: dict[str, float],
    standing: _Standing,
    workdir: Path,
    snapshot: Path | None,
) -> None:
    """Record the epoch's row, keep the best weights, write the checkpoint (and the snapshot)."""
    state_path, best_path = workdir / "last.pt", workdir / "best.pt"
    standing.history.append(row)
    if row["val_acc"] > standing.best_acc:
        standing.best_acc, standing.best_epoch = row["val_acc"], int(row["epoch"])
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, best_path)
    torch.save(
        {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "epoch": int(row["epoch"]) - 1,
            "best_acc": standing.best_acc,
            "best_epoch": standing.best_epoch,
            "history": standing.history,
            "shape": shape_of(spec),
        },
        state_path,
    )
    if snapshot is not None:
        write_snapshot(state_path, best_path, snapshot)


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
    recipe = _Recipe(seed, bf16, progress, device, views, view_share, distill, sample_weights, partial)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_network(spec)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=spec.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing, reduction="none")
    standing = _start(spec, model, optimizer, workdir, snapshot, init)
    model.to(device)
    if distill is not None:
        distill.teacher.to(device).eval()
    if standing.start > 0:  # the optimizer's state was loaded for CPU tensors
        optimizer.load_state_dict(optimizer.state_dict())
    steps = len(train_split.images) // spec.batch_size
    if max_batches is not None:
        steps = min(steps, max_batches)
    for epoch in range(standing.start, epochs):
        t0 = time.time()
        row = _train_epoch(spec, model, optimizer, loss_fn, train_split, epoch, epochs, steps, recipe)
        val_logits = predict_logits(model, val_split.images)
        row["val_acc"] = float((val_logits.argmax(1) == val_split.labels).mean())
        row["seconds"] = time.time() - t0
        _end_epoch(spec, model, optimizer, row, standing, workdir, snapshot)
        msg = (
            f"{spec.name} epoch {epoch + 1}/{epochs} loss={row['train_loss']:.4f} "
            f"train_acc={row['train_acc']:.4f} val_acc={row['val_acc']:.4f} "
            f"best={standing.best_acc:.4f}@{standing.best_epoch} {row['seconds']:.0f}s"
        )
        tqdm.write(msg) if progress else log.info(msg)
    model.load_state_dict(torch.load(workdir / "best.pt"))
    model.cpu().eval()
    return TrainResult(
        model=model, best_epoch=standing.best_epoch, best_val_accuracy=standing.best_acc, history=standing.history
    )
