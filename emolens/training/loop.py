"""Deterministic, resumable training on CPU (bf16 autocast where the CPU supports it)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from emolens.training.augment import augment_batch
from emolens.training.data import Split
from emolens.training.model import FaceNet
from emolens.training.tasks import TaskSpec

log = logging.getLogger(__name__)


class CheckpointShapeError(ValueError):
    """A checkpoint holds a network of another shape than the recipe asks for."""


def shape_of(spec: TaskSpec) -> dict[str, list[int]]:
    return {"channels": list(spec.channels), "reps": list(spec.reps)}


def _describe(shape: dict[str, list[int]]) -> str:
    return " ".join(f"{key} {','.join(map(str, values))}" for key, values in shape.items())


def check_checkpoint_shape(state: dict, spec: TaskSpec, path: Path) -> None:
    """Refuse ``state`` (a ``last.pt``) when it was trained with another network shape.

    Checkpoints written before the shape was recorded carry none and pass.
    """
    saved, wanted = state.get("shape"), shape_of(spec)
    if saved is not None and saved != wanted:
        raise CheckpointShapeError(
            f"{path} was trained with {_describe(saved)}, but this run asks for {_describe(wanted)}"
        )


@dataclass
class TrainResult:
    model: FaceNet
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
    """Logits for uint8 [N, H, W] images, no augmentation."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size].astype(np.float32)[:, None])
        out.append(model(x).float().numpy())
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
) -> TrainResult:
    """Train ``spec`` and return the model of the best validation epoch.

    Each epoch ends with a checkpoint in ``workdir``; a later call with the same arguments
    resumes from it, and one that asks for another network shape raises
    :class:`CheckpointShapeError`. Every epoch draws its shuffles and augmentations from
    ``(seed, epoch)``, so a resumed run repeats what an unbroken run would have done.
    With ``views`` (the training crops re-cut as the pipeline would, same order), each image
    of a batch is replaced by its view with probability ``view_share``.
    """
    epochs = epochs or spec.epochs
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = FaceNet(spec)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=spec.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing)
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
        log.info("event=resume task=%s epoch=%d best_val_acc=%.4f", spec.name, start, best_acc)

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
            source = train_split.images[idx]
            if views is not None and view_share > 0:
                use = rng.random(len(idx)) < view_share
                source = np.where(use[:, None, None], views[idx], source)
            x = torch.from_numpy(augment_batch(source, rng))
            y = torch.from_numpy(train_split.labels[idx])
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(spec, epoch, step, steps, epochs)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
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
            torch.save(model.state_dict(), best_path)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best_acc": best_acc,
                "best_epoch": best_epoch,
                "history": history,
                "shape": shape_of(spec),
            },
            state_path,
        )
        msg = (
            f"{spec.name} epoch {epoch + 1}/{epochs} loss={row['train_loss']:.4f} "
            f"train_acc={row['train_acc']:.4f} val_acc={val_acc:.4f} best={best_acc:.4f}@{best_epoch} "
            f"{row['seconds']:.0f}s"
        )
        tqdm.write(msg) if progress else log.info(msg)
    model.load_state_dict(torch.load(best_path))
    model.eval()
    return TrainResult(model=model, best_epoch=best_epoch, best_val_accuracy=best_acc, history=history)
