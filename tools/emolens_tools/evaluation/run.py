"""Evaluate the shipped models (ONNX Runtime, CPU) and write the model card.

    emolens evaluate                  # everything, on the test splits
    emolens evaluate --skip-pipeline  # direct crops and robustness only
    emolens evaluate --limit 300      # quick look on the first 300 faces per set

Reads the shared datasets from ``--data-dir``, else ``$EMOLENS_DATA_DIR``, else
``../shared/data`` beside the checkout the current directory is in; measures the models in the
package unless ``--repo`` names another repository. Writes docs/model-card.md (rendered from
``model_card.md.tmpl``) and docs/evaluation.json under the current directory unless ``--out``
and ``--json`` say otherwise. The preprocessing choice is measured on `val`, every reported
number on `test`. Needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emolens.contract import default_repository, training_folder
from emolens.geometry import holds
from emolens.inference import EMOTION, SMILE, Classifier, softmax
from emolens.inference.onnx import OnnxClassifier
from emolens.pipeline import Analyzer
from emolens.settings import Settings
from emolens.vision.preprocess import preprocess
from emolens_tools.evaluation import small_faces
from emolens_tools.evaluation.model_card import Agreement, DirectResult, ModelEvaluation, PipelineResult, render_card
from emolens_tools.evaluation.scores import class_report, confusion_matrix, roc_auc
from emolens_tools.testframes import BACKGROUNDS  # the photos test faces are pasted on
from emolens_tools.training import augment as aug
from emolens_tools.training.canvas import place_on_canvas
from emolens_tools.training.crops import photo_frames
from emolens_tools.training.data import DatasetMissingError, Split, load_split, resized
from emolens_tools.training.tasks import TASKS


def _conditions(rng_seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(rng_seed)
    return {
        "low light (gamma 2.5, x0.35)": lambda im: aug.low_light(im, 2.5, 0.35),
        "Gaussian noise (sigma 12)": lambda im: aug.gaussian_noise(im, 12.0, rng),
        "blur (sigma 1.5)": lambda im: aug.blur(im, 1.5),
        "downscale to 24 px and back": lambda im: aug.downscale(im, 24),
        "rotation +20 deg": lambda im: aug.rotate(im, 20.0),
        "rotation -20 deg": lambda im: aug.rotate(im, -20.0),
        "JPEG quality 20": lambda im: aug.jpeg(im, 20),
    }


def predict(clf: Classifier, model: str, images: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [clf.predict(model, images[i : i + batch].astype(np.float32)[:, None]) for i in range(0, len(images), batch)]
    return softmax(np.concatenate(out))


def direct(clf: OnnxClassifier, model: str, split: Split) -> tuple[DirectResult, np.ndarray]:
    probs = predict(clf, model, split.images)
    pred = probs.argmax(1)
    cm = confusion_matrix(split.labels, pred, probs.shape[1])
    rep = class_report(cm)
    res = DirectResult(rep.accuracy, rep.macro_f1, cm, rep.precision, rep.recall, rep.f1, rep.support)
    if model == SMILE:
        res.auc = _auc(split.labels, probs[:, 1])
    if model == EMOTION and split.extra_labels is not None:
        ok = (split.extra_labels >= 0) & (split.extra_labels <= 6)
        res.ferplus_accuracy = float((pred[ok] == split.extra_labels[ok]).mean())
        res.ferplus_n = int(ok.sum())
    return res, probs


def robustness(clf: OnnxClassifier, model: str, split: Split, clean: float, seed: int) -> dict[str, float]:
    out = {}
    for name, fn in _conditions(seed).items():
        degraded = np.stack([fn(im.astype(np.float32)) for im in split.images])
        acc = float((predict(clf, model, degraded).argmax(1) == split.labels).mean())
        out[name] = acc
    return out


def choose_preprocessing(clf: OnnxClassifier, model: str, split: Split, seed: int) -> dict[str, dict[str, float]]:
    """Mean accuracy on `val` over clean + degraded crops for each preprocessing mode."""
    info = clf.info(model)
    table: dict[str, dict[str, float]] = {}
    variants = {"clean": lambda im: im, **_conditions(seed)}
    for mode in ("none", "clahe", "auto"):
        row = {}
        for name, fn in variants.items():
            imgs = np.stack(
                [
                    preprocess(
                        np.clip(fn(im.astype(np.float32)), 0, 255).astype(np.uint8),
                        mode,
                        float(info.crop_box[2]),
                        float(info.crop_box[2]),
                    )
                    for im in split.images
                ]
            )
            row[name] = float((predict(clf, model, imgs).argmax(1) == split.labels).mean())
        row["mean"] = float(np.mean(list(row.values())))
        table[mode] = row
    return table


def pipeline_eval(settings: Settings, model: str, split: Split, upscale: int, seed: int) -> PipelineResult:
    """Paste each test face (upscaled) into a 640x480 frame over clutter and run the full pipeline."""
    from emolens.pipeline import Analyzer

    analyzer = Analyzer(settings)
    bgs = photo_frames(BACKGROUNDS)
    rng = np.random.default_rng(seed)
    found = correct = direct_correct = 0
    clf = analyzer.classifier
    for im, label in tqdm(
        list(zip(split.images, split.labels, strict=True)), desc=f"pipeline {model}", file=sys.stderr
    ):
        side = im.shape[0] * upscale
        canvas = bgs[rng.integers(len(bgs))]
        oy, ox = int(rng.integers(0, 480 - side)), int(rng.integers(0, 640 - side))
        faces = analyzer.analyze(place_on_canvas(im, upscale, canvas, oy, ox))
        cx, cy = ox + side / 2, oy + side / 2
        hits = [f for f in faces if holds(f.box, cx, cy)]
        if hits:
            found += 1
            f = max(hits, key=lambda f: f.detection_score)
            pred = int(f.smile >= 0.5) if model == SMILE else int(np.argmax(list(f.emotions.values())))
            correct += pred == label
        size = clf.info(model).size
        crop = resized(im[None], size)[0]
        direct_correct += int(predict(clf, model, crop[None]).argmax(1)[0]) == label
    n = len(split.images)
    return PipelineResult(
        faces=n,
        found_rate=found / n,
        pipeline_accuracy=correct / n,
        pipeline_accuracy_on_found=correct / max(found, 1),
        direct_accuracy=direct_correct / n,
    )


def _auc(labels: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC, or None where a small --limit sample holds one class only."""
    return roc_auc(labels, score) if len(np.unique(labels)) == 2 else None


def duplicate_free(data_dir: Path | None) -> np.ndarray:
    """Mask over FER2013 `test` (in load_split's order): the faces whose pixels occur in no
    `train` or `val` image (``dup_group``, computed from pixels only, never from labels)."""
    from emolens_tools.training.data import data_dir as default_data_dir

    with np.load((data_dir or default_data_dir()) / TASKS[EMOTION].dataset) as archive:
        split, group = archive["split"], archive["dup_group"]
    seen = set(group[split != "test"].tolist())
    return np.array([g not in seen for g in group[split == "test"].tolist()])


def agreement(
    clf: Classifier, fer: dict[str, Split], smiles: dict[str, Split], fer_test_probs: np.ndarray, keep: np.ndarray
) -> Agreement:
    """Cross-dataset figures and happy <-> smile consistency (``fer``/``smiles``: val and test)."""
    emo_size, smile_size = clf.info(EMOTION).size, clf.info(SMILE).size
    happy = list(clf.info(EMOTION).labels).index("happy")
    fer_test = fer["test"]
    consistency: dict[str, tuple[float, int]] = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # set -> (P(happy), P(smile)) per face
    for name, data in (("FER2013", fer), ("SMILEsmileD", smiles)):
        for split in ("val", "test"):
            images = data[split].images
            p_happy = predict(clf, EMOTION, resized(images, emo_size))[:, happy]
            p_smile = predict(clf, SMILE, resized(images, smile_size))[:, 1]
            scores[f"{name} {split}"] = p_happy, p_smile
            sure = p_happy >= 0.7
            agree = float((p_smile[sure] >= 0.5).mean()) if sure.any() else 0.0
            consistency[f"{name} {split}"] = (agree, int(sure.sum()))
    smile_on_fer = scores["FER2013 test"][1]
    happy_on_smiles = scores["SMILEsmileD test"][0]
    is_happy = (fer_test.labels == happy).astype(np.int64)
    return Agreement(
        emotion_accuracy_without_duplicates=float((fer_test_probs.argmax(1)[keep] == fer_test.labels[keep]).mean()),
        emotion_faces_without_duplicates=int(keep.sum()),
        emotion_happy_auc_on_smiles=_auc(smiles["test"].labels, happy_on_smiles),
        smile_accuracy_on_fer_happy=float(((smile_on_fer >= 0.5) == is_happy.astype(bool)).mean()),
        smile_auc_on_fer_happy=_auc(is_happy, smile_on_fer),
        consistency=consistency,
    )


# Imported late, by the pipeline evaluation's backgrounds (emolens.testframes), so checked before
# any figure is computed: a missing one otherwise surfaced after the direct figures (~12 s).
PIPELINE_NEEDS = ("skimage",)


def require_modules(names: tuple[str, ...]) -> None:
    """``ModuleNotFoundError`` naming the first of ``names`` that is not installed (the CLI turns
    it into one line naming the extra)."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emolens evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=default_repository(), help="model repository to evaluate")
    parser.add_argument("--data-dir", type=Path, help="folder with the .npz files")
    parser.add_argument("--out", type=Path, default=Path("docs", "model-card.md"), help="the model card to write")
    parser.add_argument("--json", type=Path, default=Path("docs", "evaluation.json"), help="the numbers as JSON")
    parser.add_argument("--limit", type=int, help="first N faces per set (quick look; not for the card)")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    return parser


def _evaluate_model(
    clf: OnnxClassifier, model: str, test: Split, val: Split, args: argparse.Namespace
) -> tuple[dict[str, object], ModelEvaluation, np.ndarray]:
    """One model on its own test set (direct, robustness) and its preprocessing on val: the
    figures for the JSON, the model card's entry, the test set's probabilities."""
    if args.limit:
        test = Split(
            test.images[: args.limit],
            test.labels[: args.limit],
            None if test.extra_labels is None else test.extra_labels[: args.limit],
        )
        val = Split(val.images[: args.limit], val.labels[: args.limit])
    res, probs = direct(clf, model, test)
    robust = robustness(clf, model, test, res.accuracy, args.seed)
    prep = choose_preprocessing(clf, model, val, args.seed)
    onnx_bytes = (args.repo / model / "1" / "model.onnx").stat().st_size
    figures = {
        "accuracy": res.accuracy,
        "macro_f1": res.macro_f1,
        "auc": res.auc,
        "ferplus_accuracy": res.ferplus_accuracy,
        "confusion_matrix": res.cm.tolist(),
        "robustness": robust,
        "max_robustness_drop_points": max(100 * (res.accuracy - v) for v in robust.values()),
        "preprocessing_on_val": prep,
        "onnx_bytes": onnx_bytes,
    }
    meta = training_folder(args.repo, model) / "training.json"
    info = clf.info(model)
    card = ModelEvaluation(
        name=model,
        labels=info.labels,
        size=info.size,
        onnx_bytes=onnx_bytes,
        training=json.loads(meta.read_text()) if meta.exists() else {},
        direct=res,
        robustness=robust,
        preprocessing=prep,
    )
    print(f"{model}: accuracy {res.accuracy:.4f} auc {res.auc} ferplus {res.ferplus_accuracy}", file=sys.stderr)
    return figures, card, probs


def _agreement(
    clf: OnnxClassifier, splits: dict[str, tuple[Split, Split]], emotion_probs: np.ndarray, args: argparse.Namespace
) -> Agreement:
    """The two models against each other's datasets (see :func:`agreement`)."""
    keep = duplicate_free(args.data_dir)
    fer = {"test": splits[EMOTION][0], "val": splits[EMOTION][1]}
    smiles = {"test": splits[SMILE][0], "val": splits[SMILE][1]}
    if args.limit:
        keep = keep[: args.limit]
        fer = {k: Split(v.images[: args.limit], v.labels[: args.limit]) for k, v in fer.items()}
        smiles = {k: Split(v.images[: args.limit], v.labels[: args.limit]) for k, v in smiles.items()}
    agree = agreement(clf, fer, smiles, emotion_probs, keep)
    print(f"agreement: {agree}", file=sys.stderr)
    return agree


def _pipeline(args: argparse.Namespace) -> tuple[dict[str, PipelineResult], small_faces.SmallFaces]:
    """Both models through the whole pipeline on faces placed in photos, and small faces."""
    pipeline: dict[str, PipelineResult] = {}
    settings = Settings.from_env(inference=f"onnx://{args.repo}", detector="blazeface")
    for model, upscale in ((EMOTION, 4), (SMILE, 3)):
        test = load_split(TASKS[model], "test", args.data_dir, native=True)
        if args.limit:
            test = Split(test.images[: args.limit], test.labels[: args.limit])
        pipeline[model] = pipeline_eval(settings, model, test, upscale, args.seed)
        print(f"pipeline {model}: {pipeline[model]}", file=sys.stderr)
    small = small_faces.measure(
        Analyzer(Settings.from_env(inference=f"onnx://{args.repo}")),
        frames=max(args.limit // 4, 5) if args.limit else small_faces.FRAMES,
        data_dir=args.data_dir,
    )
    return pipeline, small


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.skip_pipeline:
        require_modules(PIPELINE_NEEDS)
    clf = OnnxClassifier(args.repo)
    results: dict[str, object] = {}
    models: list[ModelEvaluation] = []
    t0 = time.time()
    try:
        splits = {
            m: (load_split(TASKS[m], "test", args.data_dir), load_split(TASKS[m], "val", args.data_dir))
            for m in (SMILE, EMOTION)
        }
    except DatasetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    test_probs: dict[str, np.ndarray] = {}
    for model in (SMILE, EMOTION):
        results[model], card, test_probs[model] = _evaluate_model(clf, model, *splits[model], args)
        models.append(card)
    agree = _agreement(clf, splits, test_probs[EMOTION], args)
    results["agreement"] = asdict(agree)
    pipeline: dict[str, PipelineResult] = {}
    small_card = None
    if not args.skip_pipeline:
        pipeline, small = _pipeline(args)
        results["pipeline"] = {model: asdict(r) for model, r in pipeline.items()}
        results["small_faces"] = small_faces.to_json(small)
        small_card = small_faces.render(small)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_card(models, pipeline, args.limit, agree, small_card))
    print(f"wrote {args.out} and {args.json} in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0
