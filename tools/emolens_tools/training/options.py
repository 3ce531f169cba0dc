r"""Train one model on the shared data and export it to the model repository (by default the
one in the package, emolens/model_repository/; ``--repo`` for another).

    python scripts/train.py --task smile
    python scripts/train.py --task emotion --workdir /tmp/emolens-train   # resumes if interrupted
    python scripts/train.py --task smile --member 1                       # one network of the ensemble
    python scripts/train.py --task emotion --member 0 --channels 48,64,128,256 --workdir /tmp/wide \
        --repo /tmp/wide/repo                                             # another network shape
    python scripts/train.py --task emotion --teacher                     # the long-trained teacher
    python scripts/train.py --task emotion --teacher --device cuda       # the same on a GPU

A teacher (TEACHERS) is never exported: each epoch rewrites its committed snapshot
(tools/emolens_tools/training/teachers/TASK.pt, weights and history, no optimizer state), and a run on a
machine without its checkpoints warm-starts from that snapshot, so training spans sessions.

A model is one network or an ensemble of networks (TaskSpec.members, each with its own shape and
schedule where the member names one); each network keeps its checkpoints in WORKDIR/TASK
(member 0) or WORKDIR/TASK-mK, and the export runs once every member has a best checkpoint.
--channels/--reps/--epochs/--lr apply to every member trained in the run. Uses the ``train`` split to fit
and the ``val`` split to pick the best epoch; never the ``test`` split. The data comes from ``--data-dir``, else
:func:`emolens_tools.training.data.data_dir` (``$EMOLENS_DATA_DIR``, else ``../shared/data`` beside the
checkout the current directory is in). ``python -m emolens_tools.training.run`` runs the same.

Training itself needs the ``train`` extra (PyTorch); this module does not, so ``--help`` works
without it.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path

from emolens.contract import default_repository
from emolens_tools.training.tasks import TASKS


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _float_where(expected: str, holds: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: a number for which ``holds`` is true, else "expected <expected>"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # no check holds for NaN
        if not holds(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive = _float_where("a positive number", lambda v: v > 0)
_share = _float_where("a number from 0 to 1", lambda v: 0.0 <= v <= 1.0)


def _device(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python scripts/train.py`` (emolens_tools.training.run.main)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--workdir", type=Path, help="checkpoint root (default ~/.cache/emolens/train)")
    parser.add_argument("--member", type=int, help="train only this network of the ensemble (default: all)")
    parser.add_argument(
        "--repo", type=Path, default=default_repository(), help="where to export (default: the package's models)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="folder with the .npz files (default $EMOLENS_DATA_DIR, else ../shared/data)"
    )
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--lr", type=_positive, help="override the recipe's peak learning rate")
    parser.add_argument(
        "--suspect-weight",
        type=_share,
        help="override the weight of training labels the out-of-fold audit contradicts (0..1; 1 turns it off)",
    )
    parser.add_argument("--channels", type=_ints, help="override the widths per stage, e.g. 48,64,128,256")
    parser.add_argument("--reps", type=_ints, help="override the convolutions per stage, e.g. 1,2,2,2")
    parser.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke runs)")
    parser.add_argument("--limit", type=int, help="use only the first N training and N validation images (smoke runs)")
    parser.add_argument("--teacher", action="store_true", help="train the task's teacher (TEACHERS) instead")
    parser.add_argument("--snapshot", type=Path, help="teacher snapshot to warm-start from and rewrite each epoch")
    parser.add_argument("--device", type=_device, default="cpu", help="torch device: cpu (default), cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--fp32", action="store_true", help="export the fp32 graph instead of int8")
    parser.add_argument(
        "--export-only", action="store_true", help="export the best checkpoints in --workdir without training"
    )
    parser.add_argument("--template-images", type=int, default=600, help="training crops used to measure the crop box")
    return parser
