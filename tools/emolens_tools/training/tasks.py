"""What each model is: its classes, input size, architecture and training recipe."""

from __future__ import annotations

import dataclasses
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
    # Also learn from TaskSpec.partial_task's faces, whose labels say only whether each shows
    # TaskSpec.partial_class (emolens_tools.training.loop.PartialLabels).
    partial_labels: bool = False
    # With distill: the teacher reads the face as the dataset cut it where this network sees its
    # re-cut serving view (Distillation.source_view).
    teacher_reads_source: bool = False
    # This network's share of the ensemble's mean probability, relative to the other members'.
    weight: float = 1.0
    # This network's own shape and schedule where it differs from the task's (None: the task's).
    # An ensemble can mix a network fine-tuned from the teacher with one trained from scratch.
    arch: str | None = None
    channels: tuple[int, ...] | None = None
    reps: tuple[int, ...] | None = None
    epochs: int | None = None
    lr: float | None = None


MEMBER_RECIPE_FIELDS = ("arch", "channels", "reps", "epochs", "lr")


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
    # (emolens_tools.training.noise); 1.0 turns the audit off.
    suspect_weight: float = 1.0
    # Members with partial_labels also see this task's training faces (at this task's input size):
    # its class ``partial_source_class`` (None: its last, positive class) implies ``partial_class``,
    # any other class rules it out.
    partial_task: str | None = None
    partial_class: str | None = None
    partial_source_class: str | None = None
    partial_per_batch: int = 32


def member_spec(spec: TaskSpec, member: Member) -> TaskSpec:
    """The recipe one network of ``spec`` trains with: the task's, with the member's own shape and schedule."""
    own = {name: getattr(member, name) for name in MEMBER_RECIPE_FIELDS if getattr(member, name) is not None}
    return dataclasses.replace(spec, **own)


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
        # Member 0: the emotion teacher's network, started from its FER2013 weights (it has seen
        # 28 k expressions, SMILEsmileD has 9 k faces) and fine-tuned for smile / no smile, with
        # 32 FER2013 training faces in each batch as partial labels (happy: smile; any other
        # expression: no smile), so it keeps reading faces unlike SMILEsmileD's.
        channels=(32, 64, 128, 256),
        reps=(1, 2, 2, 2),
        arch="resnet",
        epochs=8,  # a fine-tune: one epoch from the teacher's weights already reads 92% on val
        lr=0.02,
        teacher="emotion",
        # Members 1 and 2: VGG-style networks of about 100 M multiply-adds each, trained from
        # scratch on SMILEsmileD alone for 40 epochs (two seeds); they rank SMILEsmileD's faces
        # differently. Member 0 keeps half the vote. On val (fp32) against session 6's single network:
        # 95.13% vs 94.98%, ROC-AUC 0.9861 vs 0.9804, FER2013 happy vs rest 0.955 vs 0.938
        # (docs/experiments.md, session 8).
        members=(
            Member(init_from_teacher=True, partial_labels=True, weight=2.0),
            Member(1, arch="vgg", channels=(32, 48, 96, 192), reps=(1, 2, 2, 2), epochs=40, lr=0.05),
            Member(2, arch="vgg", channels=(32, 48, 96, 192), reps=(1, 2, 2, 2), epochs=40, lr=0.05),
        ),
        partial_task="emotion",
        partial_class="smile",
        partial_source_class="happy",
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
        # A network started from the long-trained teacher and fine-tuned 5 epochs: 80% of its
        # FER2013 crops re-cut as the pipeline cuts them (the teacher reads the dataset's crop
        # for the soft targets), plus SMILEsmileD's faces as partial labels (smile -> happy,
        # no smile -> not happy); shown each face and its mirror image. On val against the
        # teacher + mirror: 70.33% vs 70.35%, P(happy) ROC-AUC on SMILEsmileD 0.969 vs 0.942,
        # pipeline accuracy 67.2% vs 66.1% (docs/experiments.md, session 7).
        members=(Member(2, 0.8, init_from_teacher=True, distill=True, partial_labels=True, teacher_reads_source=True),),
        flip_tta=True,
        kd_weight=0.5,
        partial_task="smile",
        partial_class="happy",
    ),
}


# Teachers are trained once, long, and never served: their soft targets train the serving
# networks (knowledge distillation). Their checkpoints are committed under
# tools/emolens_tools/training/teachers/ so that each session's training adds to the last one's.
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
