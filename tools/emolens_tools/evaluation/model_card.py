"""The model card (docs/model-card.md): what ``emolens evaluate`` measured, rendered into
``model_card.md.tmpl`` beside this module. The card's prose, headings and layout live in the
template; this module only turns numbers into the strings and tables it places there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from string import Template
from typing import Any

import numpy as np

from emolens.contract import EMOTION, SMILE
from emolens.tables import markdown_table

TEMPLATE = "model_card.md.tmpl"


@dataclass
class DirectResult:
    """One model on the dataset's own crops (no detector): the research-report numbers."""

    accuracy: float
    macro_f1: float
    cm: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    auc: float | None = None
    ferplus_accuracy: float | None = None
    ferplus_n: int = 0


@dataclass(frozen=True)
class PipelineResult:
    """Test faces pasted into frames and found by the full pipeline (detect -> align -> classify)."""

    faces: int
    found_rate: float
    pipeline_accuracy: float
    pipeline_accuracy_on_found: float
    direct_accuracy: float


@dataclass(frozen=True)
class Agreement:
    """How the two models agree with each other and with the other model's dataset."""

    # FER2013 test accuracy without the images whose pixels also occur in train or val
    emotion_accuracy_without_duplicates: float
    emotion_faces_without_duplicates: int
    # P(happy) of the emotion model as a smile score on SMILEsmileD test
    emotion_happy_auc_on_smiles: float | None  # None: one class only in a --limit sample
    # the smile model on FER2013 test, smile = happy
    smile_accuracy_on_fer_happy: float
    smile_auc_on_fer_happy: float | None
    # set name -> (share of faces with P(happy) >= 0.7 that the smile model calls smiling, faces)
    consistency: Mapping[str, tuple[float, int]]


@dataclass(frozen=True)
class ModelEvaluation:
    """Everything the card says about one model."""

    name: str
    labels: tuple[str, ...]
    size: int  # square input side
    onnx_bytes: int
    training: Mapping[str, Any]  # the model's training.json; empty where the repository has none
    direct: DirectResult
    robustness: Mapping[str, float]  # condition -> accuracy on the degraded test crops
    preprocessing: Mapping[str, Mapping[str, float]]  # mode -> condition (and "mean") -> val accuracy


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _summary(res: DirectResult) -> str:
    head = f"Accuracy **{_pct(res.accuracy)}** (n={int(res.support.sum())}), macro-F1 {res.macro_f1:.3f}"
    if res.auc is not None:
        head += f", ROC-AUC **{res.auc:.4f}**"
    if res.ferplus_accuracy is not None:
        head += f"; against FER+ majority labels (the {res.ferplus_n} faces whose majority is one of the 7 classes): "
        head += f"**{_pct(res.ferplus_accuracy)}**"
    return head + "."


_ARCH_NAMES = {"resnet": "ResNet", "vgg": "VGG"}


def _networks(training: Mapping[str, Any]) -> str:
    nets = "; ".join(
        f"{len(net['history']) if net.get('history') else training.get('epochs', '?')} ({net['best_epoch']}), "
        f"{net['best_val_accuracy']}"
        + (" (the teacher)" if net.get("source") == "teacher" else "")
        + (f", {_ARCH_NAMES.get(net['shape']['arch'], net['shape']['arch'])}" if net.get("shape") else "")
        + (", from the teacher" if net.get("init_from_teacher") and net.get("shape") else "")
        + (f", {net['serving_view_share']:.0%} re-cut crops" if net.get("serving_view_share") else "")
        for net in training.get("members", [])
    )
    if nets and training.get("flip_tta"):
        nets += "; mirrored view averaged"
    return nets or "?"


def _graph(training: Mapping[str, Any]) -> str:
    export = training.get("export", {})
    graph = str(export.get("precision", "?"))
    if "int8_top1_agreement" in export:
        graph += f" (same class as fp32 on {export['int8_top1_agreement']:.1%} of val)"
    return graph


def _model_fields(m: ModelEvaluation) -> dict[str, str]:
    res, robust = m.direct, m.robustness
    worst = max(robust, key=lambda k: res.accuracy - robust[k])
    fields = {
        "input": f"[N,1,{m.size},{m.size}] raw 0..255",
        "classes": ", ".join(m.labels),
        "networks": _networks(m.training),
        "val_accuracy": str(m.training.get("val_accuracy", "?")),
        "graph": _graph(m.training),
        "onnx_size": f"{m.onnx_bytes / 1e6:.2f} MB",
        "summary": _summary(res),
        "per_class": markdown_table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [c, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", str(int(s))]
                for c, p, r, f, s in zip(m.labels, res.precision, res.recall, res.f1, res.support, strict=True)
            ],
        ),
        "confusion": markdown_table(
            ["true \\ pred", *m.labels], [[c, *map(str, row)] for c, row in zip(m.labels, res.cm.tolist(), strict=True)]
        ),
        "robustness": markdown_table(
            ["condition", "accuracy", "drop (points)"],
            [[k, _pct(v), f"{100 * (res.accuracy - v):.1f}"] for k, v in robust.items()],
        ),
        "worst": f"{worst}, {100 * (res.accuracy - robust[worst]):.1f} points",
        "preprocessing": markdown_table(
            ["mode", "clean", "mean"],
            [[mode, _pct(row["clean"]), _pct(row["mean"])] for mode, row in m.preprocessing.items()],
        ),
    }
    return {f"{m.name}_{key}": value for key, value in fields.items()}


def _pipeline_table(pipeline: Mapping[str, PipelineResult] | None) -> str:
    if not pipeline:
        return "_Not measured in this run (`--skip-pipeline`)._"
    return markdown_table(
        ["model", "faces", "found", "pipeline accuracy", "accuracy on found", "direct-crop accuracy", "gap (points)"],
        [
            [
                name,
                str(r.faces),
                _pct(r.found_rate),
                _pct(r.pipeline_accuracy),
                _pct(r.pipeline_accuracy_on_found),
                _pct(r.direct_accuracy),
                f"{100 * (r.direct_accuracy - r.pipeline_accuracy):.1f}",
            ]
            for name, r in pipeline.items()
        ],
    )


def _auc(value: float | None) -> str:
    return "n/a (one class in the sample)" if value is None else f"{value:.4f}"


def _agreement_fields(a: Agreement | None) -> dict[str, str]:
    if a is None:
        return {"no_duplicates": "not measured in this run", "agreement": "_Not measured in this run._"}
    table = markdown_table(
        ["figure", "value"],
        [
            ["emotion P(happy) as a smile score, SMILEsmileD test (ROC-AUC)", _auc(a.emotion_happy_auc_on_smiles)],
            ["smile model on FER2013 test, smile = happy (accuracy)", _pct(a.smile_accuracy_on_fer_happy)],
            ["smile model on FER2013 test, smile = happy (ROC-AUC)", _auc(a.smile_auc_on_fer_happy)],
            *[
                [f"consistency on {name}: P(happy) >= 0.7 and the smile model says smile", f"{_pct(v)} of {n}"]
                for name, (v, n) in a.consistency.items()
            ],
        ],
    )
    dedup = f"{_pct(a.emotion_accuracy_without_duplicates)} on the {a.emotion_faces_without_duplicates} test faces"
    return {"no_duplicates": dedup + " whose pixels occur in neither `train` nor `val`", "agreement": table}


def render_card(
    models: Sequence[ModelEvaluation],
    pipeline: Mapping[str, PipelineResult] | None,
    limit: int | None = None,
    agreement: Agreement | None = None,
    small_faces: str | None = None,
) -> str:
    """The model card's Markdown; ``models`` holds the smile and the emotion model, ``limit`` marks
    a quick look on the first N faces per set."""
    names = sorted(m.name for m in models)
    if names != sorted((SMILE, EMOTION)):
        raise ValueError(f"the model card describes {SMILE} and {EMOTION}, got {', '.join(names) or 'none'}")
    fields = {
        "scope": f"(quick look: --limit {limit})" if limit else "on the full `test` splits",
        "pipeline": _pipeline_table(pipeline),
        "small_faces": small_faces or "_Not measured in this run (`--skip-pipeline`)._",
        **_agreement_fields(agreement),
    }
    for m in models:
        fields.update(_model_fields(m))
    template = files("emolens_tools.evaluation").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return Template(template).substitute(fields)
