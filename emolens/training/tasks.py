"""What each model is: its classes, input size, architecture and training recipe."""

from __future__ import annotations

from dataclasses import dataclass

from emolens.contract import EMOTION, INPUT_SIZES, LABELS, SMILE


@dataclass(frozen=True)
class Member:
    """One network of a model's ensemble: the shared recipe plus what makes it differ."""

    seed_offset: int = 0  # added to the run's --seed
    serving_view_share: float = 0.0  # share of training crops re-cut as the pipeline cuts them
    # "train": trained by this recipe; "teacher": the committed teacher of ``teacher`` (its best
    # epoch), shipped as it is. A teacher member must have the recipe's network shape.
    source: str = "train"
    # Start from the committed teacher's weights (every layer whose shape fits; a head for other
    # classes starts fresh): the smile network learns from FER2013's expressions this way.
    init_from_teacher: bool = False
    # Add the teacher's soft targets on the same augmented batch to the loss (TaskSpec.temperature,
    # TaskSpec.kd_weight).
    distill: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """One model of the model contract plus the recipe that trains it."""

    name: str
    classes: tuple[str, ...]
    dataset: str  # file name in the data directory
    size: int  # square input side declared in config.pbtxt
    channels: tuple[int, ...]
    reps: tuple[int, ...]
    epochs: int
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    dropout: float = 0.3
    # The exported model averages the probabilities of these networks in one ONNX graph.
    members: tuple[Member, ...] = (Member(),)
    # "vgg": plain 3x3 convolutions then max-pool per stage;
    # "resnet": residual basic blocks, strided downsampling.
    arch: str = "vgg"
    # The TEACHERS entry that members' init_from_teacher / distill / source="teacher" refer to.
    teacher: str | None = None
    temperature: float = 4.0  # distillation softmax temperature
    kd_weight: float = 0.7  # share of the loss that follows the teacher
    # The exported graph also classifies the mirrored face and averages the two.
    flip_tta: bool = False
    # Weight of a training image whose label the out-of-fold audit contradicts
    # (emolens.training.noise); 1.0 turns the audit off.
    suspect_weight: float = 1.0


EMOTION_CLASSES = LABELS[EMOTION]
SMILE_CLASSES = LABELS[SMILE]

# Sizes are set by the serving floor: >= 500 faces/s per model at batch 64 with int8 ONNX Runtime
# on a 2-core CPU (emolens bench). The ResNet-style network below (about 265 M multiply-adds at
# 48 px, 470 M at 64 px) serves at about 2,800 (48 px) faces/s there, so each model can be one
# of them, or two. Sessions 1-4 shipped two 56 M VGG-style networks per model under a floor of
# 1,500 faces/s (docs/experiments.md).
TASKS: dict[str, TaskSpec] = {
    "smile": TaskSpec(
        name="smile",
        classes=SMILE_CLASSES,
        dataset="smiles.npz",
        # SMILEsmileD's native 64 px: the mouth keeps detail that 48 px loses.
        size=INPUT_SIZES[SMILE],
        # The emotion teacher's network, started from its FER2013 weights (it has seen 28 k
        # expressions, SMILEsmileD has 9 k faces) and fine-tuned for smile / no smile.
        channels=(32, 64, 128, 256),
        reps=(1, 2, 2, 2),
        arch="resnet",
        epochs=8,  # a fine-tune: one epoch from the teacher's weights already reads 92% on val
        lr=0.02,
        teacher="emotion",
        members=(Member(init_from_teacher=True),),
        # One annotator labelled SMILEsmileD: 1.4% of train labels are contradicted out of fold.
        suspect_weight=0.2,
    ),
    "emotion": TaskSpec(
        name="emotion",
        classes=EMOTION_CLASSES,
        dataset="fer2013.npz",
        size=INPUT_SIZES[EMOTION],
        channels=(32, 64, 128, 256),
        reps=(1, 2, 2, 2),
        arch="resnet",
        epochs=5,
        lr=0.02,
        teacher="emotion",
        # The long-trained teacher itself, shown each face and its mirror image (val: 69.91% ->
        # 70.44% fp32); 530 M multiply-adds a face. The next member is ready in code and tests but
        # not trained yet: Member(1, 0.5, init_from_teacher=True, distill=True), a network started
        # from the teacher and distilled from it on half re-cut crops (docs/experiments.md).
        members=(Member(source="teacher"),),
        flip_tta=True,
    ),
}


# Teachers are trained once, long, and never served: their soft targets train the serving
# networks (knowledge distillation). Their checkpoints are committed under
# emolens/training/teachers/ so that each session's training adds to the last one's.
TEACHERS: dict[str, TaskSpec] = {
    "emotion": TaskSpec(
        name="emotion",
        classes=EMOTION_CLASSES,
        dataset="fer2013.npz",
        size=INPUT_SIZES[EMOTION],
        # A ResNet-style network of about 265 M multiply-adds and 2.8 M parameters: ~5x a
        # serving network, which is what 2 CPU cores can train for 60 epochs in a few sittings.
        channels=(32, 64, 128, 256),
        reps=(1, 2, 2, 2),
        epochs=60,
        lr=0.1,
        arch="resnet",
    ),
}
