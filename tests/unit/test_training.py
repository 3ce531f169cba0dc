"""A tiny training run end to end (a few batches) and the pieces it is built from."""

import dataclasses
import itertools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.contract import training_folder  # noqa: E402
from emolens.inference.onnx import OnnxClassifier  # noqa: E402
from emolens_tools.training import augment  # noqa: E402
from emolens_tools.training.loop import _lr_at  # noqa: E402
from emolens_tools.training.run import main as train_main  # noqa: E402
from emolens_tools.training.tasks import TASKS  # noqa: E402


def test_tiny_training_run_exports_a_contract_model(data_dir, tmp_path):
    args = [
        "--task",
        "smile",
        "--epochs",
        "2",
        "--max-batches",
        "3",
        "--limit",
        "512",
        "--template-images",
        "60",
        "--workdir",
        str(tmp_path / "work"),
        "--repo",
        str(tmp_path / "repo"),
        "--data-dir",
        str(data_dir),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert train_main(args) == 0
    meta = json.loads((training_folder(tmp_path / "repo", "smile") / "training.json").read_text())
    assert meta["epochs"] == 2 and len(meta["members"]) == len(TASKS["smile"].members)
    assert all(len(member["history"]) == 2 for member in meta["members"])  # --epochs applies to every member
    assert meta["export"]["precision"] == "int8" and meta["export"]["fp32_vs_pytorch_max_abs_diff"] < 1e-3
    # the repository holds what Triton serves; weights and record lie beside it
    assert sorted(p.name for p in (tmp_path / "repo" / "smile").iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    assert (tmp_path / "model_training" / "smile" / "pytorch.pt").is_file()
    clf = OnnxClassifier(tmp_path / "repo", models=("smile",))
    side = clf.info("smile").size
    assert side == TASKS["smile"].size
    assert clf.predict("smile", np.zeros((3, 1, side, side), np.float32)).shape == (3, 2)
    # resuming a finished run trains nothing more and exports the same best epoch
    assert train_main(args) == 0
    again = json.loads((training_folder(tmp_path / "repo", "smile") / "training.json").read_text())
    assert again["members"] == meta["members"]


def test_network_shape_override_is_exported_and_reloaded(data_dir, tmp_path, capsys):
    """--channels/--reps train another shape; training.json records it and load_pytorch rebuilds it;
    the checkpoints remember it, so resuming or exporting them as another shape is refused."""
    from emolens_tools.training.export import load_pytorch

    common = ["--task", "smile", "--epochs", "1", "--max-batches", "2", "--limit", "256", "--template-images", "30"]
    common += ["--data-dir", str(data_dir), "--no-progress", "--threads", "1", "--workdir", str(tmp_path / "w")]
    repo = tmp_path / "repo"
    assert train_main([*common, "--channels", "8,16", "--reps", "1,1", "--repo", str(repo)]) == 0
    meta = json.loads((training_folder(repo, "smile") / "training.json").read_text())
    assert meta["channels"] == [8, 16] and meta["reps"] == [1, 1]
    model = load_pytorch(training_folder(repo, "smile"), TASKS["smile"])
    widths = {m.out_channels for m in model.members[0].modules() if isinstance(m, torch.nn.Conv2d)}
    assert widths == {8, 16}
    capsys.readouterr()
    assert train_main([*common, "--repo", str(repo)]) == 2
    assert train_main([*common, "--export-only", "--repo", str(repo)]) == 2
    refusals = capsys.readouterr().err.splitlines()
    assert len(refusals) == 2
    expected = "was trained with channels 8,16 reps 1,1 arch resnet, but this run asks for channels 32,"
    assert all(expected in r for r in refusals)
    assert train_main([*common, "--channels", "8,16", "--reps", "1,1,1", "--repo", str(repo)]) == 2
    with pytest.raises(SystemExit) as bad:
        train_main([*common, "--channels", "8,x"])
    assert bad.value.code == 2


def test_lr_schedule_warms_up_then_decays():
    spec = TASKS["emotion"]
    lrs = [_lr_at(spec, e, 0, 10, 10) for e in range(10)] + [_lr_at(spec, 9, 9, 10, 10)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(spec.lr)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] < 0.01 * spec.lr


def test_augmentations_keep_shape_range_and_are_seeded():
    img = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    a = augment.augment_batch(np.stack([img] * 8), np.random.default_rng(5))
    b = augment.augment_batch(np.stack([img] * 8), np.random.default_rng(5))
    assert a.shape == (8, 1, 48, 48) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # each view differs


def test_fixed_degradations():
    img = np.full((48, 48), 200.0, np.float32)
    dark = augment.low_light(img, 2.5, 0.35)
    assert dark.mean() == pytest.approx(255 * (200 / 255) ** 2.5 * 0.35, rel=1e-4)
    assert augment.downscale(img, 24).shape == (48, 48)
    assert augment.jpeg(img, 20).shape == (48, 48)
    noisy = augment.gaussian_noise(np.full((100, 100), 128.0, np.float32), 12.0, np.random.default_rng(0))
    assert noisy.std() == pytest.approx(12.0, rel=0.1)


def test_ensemble_averages_probabilities():
    from emolens_tools.training.model import Ensemble, FaceNet

    spec = TASKS["emotion"]
    torch.manual_seed(0)
    a, b = FaceNet(spec).eval(), FaceNet(spec).eval()
    x = torch.rand(3, 1, 48, 48) * 255
    with torch.no_grad():
        mean = (a(x).softmax(1) + b(x).softmax(1)) / 2
        both = Ensemble([a, b]).eval()(x)
        torch.testing.assert_close(both.softmax(1), mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(Ensemble([a]).eval()(x), a(x))  # one network passes through
        weighted = Ensemble([a, b], weights=[3.0, 1.0]).eval()(x).softmax(1)
        torch.testing.assert_close(weighted, 0.75 * a(x).softmax(1) + 0.25 * b(x).softmax(1), atol=1e-6, rtol=1e-5)
        flipped = Ensemble([a, b], flip=True, weights=[2.0, 1.0]).eval()(x).softmax(1)
        expected = (2 * (a(x).softmax(1) + a(x.flip(3)).softmax(1)) + b(x).softmax(1) + b(x.flip(3)).softmax(1)) / 6
        torch.testing.assert_close(flipped, expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        Ensemble([])
    with pytest.raises(ValueError):
        Ensemble([a, b], weights=[1.0, 0.0])  # a weight must be positive
    with pytest.raises(ValueError):
        Ensemble([a], weights=[1.0, 1.0])  # one weight per network


def test_flip_ensemble_averages_both_views_of_every_network():
    from emolens_tools.training.model import Ensemble, ResFaceNet

    spec = dataclasses.replace(TASKS["emotion"], channels=(8, 16), reps=(1, 1))
    torch.manual_seed(0)
    a, b = ResFaceNet(spec).eval(), ResFaceNet(spec).eval()
    x = torch.rand(3, 1, 48, 48) * 255
    with torch.no_grad():
        views = [a(x), b(x), a(x.flip(3)), b(x.flip(3))]
        mean = sum(v.softmax(1) for v in views) / 4
        torch.testing.assert_close(Ensemble([a, b], flip=True).eval()(x).softmax(1), mean, atol=1e-6, rtol=1e-5)
        one = Ensemble([a], flip=True).eval()(x).softmax(1)
        torch.testing.assert_close(one, (views[0].softmax(1) + views[2].softmax(1)) / 2, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(one, views[0].softmax(1))  # the mirrored view counts


def test_init_from_copies_every_fitting_layer_and_leaves_a_new_head():
    from emolens_tools.training.loop import init_from
    from emolens_tools.training.model import ResFaceNet

    shape = {"channels": (8, 16), "reps": (1, 1)}
    torch.manual_seed(0)
    source = ResFaceNet(dataclasses.replace(TASKS["emotion"], **shape))  # 7 classes
    target = ResFaceNet(dataclasses.replace(TASKS["smile"], **shape))  # 2 classes
    head_before = target.head[-1].weight.clone()
    left = init_from(target, source)
    assert left == ["head.3.bias", "head.3.weight"]
    for name, value in target.state_dict().items():
        if name not in left:
            torch.testing.assert_close(value, source.state_dict()[name])
    torch.testing.assert_close(target.head[-1].weight, head_before)


def test_a_recipe_can_ship_the_committed_teacher_beside_a_distilled_network(data_dir, tmp_path, monkeypatch, capsys):
    """Member 0 is the committed teacher as it is; member 1 starts from it, is distilled and also
    learns from SMILEsmileD's partial labels."""
    from emolens_tools.training.export import load_pytorch
    from emolens_tools.training.run import committed_teacher
    from emolens_tools.training.tasks import Member

    members = (Member(source="teacher"), Member(1, 0.5, init_from_teacher=True, distill=True, partial_labels=True))
    recipe = dataclasses.replace(
        TASKS["emotion"], members=members, flip_tta=True, partial_task="smile", partial_class="happy"
    )
    monkeypatch.setitem(TASKS, "emotion", recipe)

    repo = tmp_path / "repo"
    args = ["--task", "emotion", "--epochs", "1", "--max-batches", "2", "--limit", "128", "--template-images", "30"]
    args += ["--data-dir", str(data_dir), "--no-progress", "--threads", "1", "--workdir", str(tmp_path / "w")]
    assert train_main([*args, "--repo", str(repo)]) == 0
    assert "partial labels: 128 smile training faces" in capsys.readouterr().out
    meta = json.loads((training_folder(repo, "emotion") / "training.json").read_text())
    assert [m["source"] for m in meta["members"]] == ["teacher", "train"] and meta["flip_tta"]
    assert meta["members"][1]["distill"] and meta["members"][1]["init_from_teacher"]
    teacher = committed_teacher(TASKS["emotion"])
    shipped = load_pytorch(training_folder(repo, "emotion"), TASKS["emotion"])
    for name, value in teacher.model.state_dict().items():
        torch.testing.assert_close(shipped.members[0].state_dict()[name], value)
    assert meta["members"][0]["best_val_accuracy"] == round(teacher.best_val_accuracy, 4)
    # the distilled network started from the teacher and then moved
    moved = [
        not torch.equal(v, teacher.model.state_dict()[k])
        for k, v in shipped.members[1].state_dict().items()
        if v.is_floating_point()
    ]
    assert any(moved)
    assert shipped.flip and len(shipped.members) == 2


def test_an_ensemble_can_mix_network_shapes_and_schedules(data_dir, tmp_path, monkeypatch):
    """Each member may name its own architecture, widths and epochs: both train to their own
    schedule, training.json records each shape, and load_pytorch rebuilds the mixed ensemble
    that the exported graph matches."""
    from emolens_tools.training.export import load_pytorch
    from emolens_tools.training.model import FaceNet, ResFaceNet
    from emolens_tools.training.tasks import Member

    members = (
        Member(channels=(8, 16), reps=(1, 1), weight=2.0),
        Member(1, arch="vgg", channels=(8, 12), reps=(1, 1), epochs=2, lr=0.05),
    )
    monkeypatch.setitem(TASKS, "smile", dataclasses.replace(TASKS["smile"], members=members, epochs=1))
    repo = tmp_path / "repo"
    args = ["--task", "smile", "--max-batches", "2", "--limit", "256", "--template-images", "30"]
    args += ["--data-dir", str(data_dir), "--no-progress", "--threads", "1", "--workdir", str(tmp_path / "w")]
    assert train_main([*args, "--repo", str(repo)]) == 0
    meta = json.loads((training_folder(repo, "smile") / "training.json").read_text())
    assert [len(m["history"]) for m in meta["members"]] == [1, 2]
    assert [m["shape"] for m in meta["members"]] == [
        {"arch": "resnet", "channels": [8, 16], "reps": [1, 1]},
        {"arch": "vgg", "channels": [8, 12], "reps": [1, 1]},
    ]
    assert meta["export"]["fp32_vs_pytorch_max_abs_diff"] < 1e-3
    shipped = load_pytorch(training_folder(repo, "smile"), TASKS["smile"])
    assert [type(m) for m in shipped.members] == [ResFaceNet, FaceNet]
    assert [m["weight"] for m in meta["members"]] == [2.0, 1.0] and shipped.weights == pytest.approx([2 / 3, 1 / 3])
    widths = [{c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)} for m in shipped.members]
    assert widths[0] == {8, 16} and widths[1] == {8, 12}
    # the reloaded ensemble is the trained one: same outputs as the exported graph
    side = TASKS["smile"].size
    faces = np.random.default_rng(0).integers(0, 256, (4, 1, side, side)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(shipped(torch.from_numpy(faces)), 1).numpy()
    got = OnnxClassifier(repo, models=("smile",)).predict("smile", faces)
    got = np.exp(got - got.max(1, keepdims=True))
    got /= got.sum(1, keepdims=True)
    assert np.abs(got - expected).max() < 0.1  # int8 graph against the fp32 networks


def test_a_run_that_only_trains_needs_no_face_detector_and_takes_the_run_overrides(data_dir, tmp_path, monkeypatch):
    """Training one member of an ensemble loads no face detector (a GPU machine may lack its
    runtime): the crop box is measured when the export needs it. --lr reaches every member's recipe,
    --suspect-weight the task's."""
    from emolens_tools.training import run as run_module
    from emolens_tools.training.tasks import Member

    members = (Member(channels=(8, 16), reps=(1, 1)), Member(1, arch="vgg", channels=(8, 12), reps=(1, 1)))
    monkeypatch.setitem(TASKS, "smile", dataclasses.replace(TASKS["smile"], members=members, epochs=1))
    real_detector = run_module.make_detector

    def no_detector(*args, **kwargs):
        raise AssertionError("a run that only trains loaded the face detector")

    monkeypatch.setattr(run_module, "make_detector", no_detector)
    work, repo = tmp_path / "w", tmp_path / "repo"
    args = ["--task", "smile", "--max-batches", "2", "--limit", "256", "--template-images", "30", "--lr", "0.013"]
    args += ["--data-dir", str(data_dir), "--no-progress", "--threads", "1", "--workdir", str(work)]
    args += ["--repo", str(repo), "--suspect-weight", "0.5"]
    assert train_main([*args, "--member", "1"]) == 0
    assert (work / "smile-m1" / "best.pt").exists() and not (repo / "smile").exists()
    monkeypatch.setattr(run_module, "make_detector", real_detector)
    assert train_main([*args, "--member", "0"]) == 0  # the last member: trains, measures the crop box, exports
    meta = json.loads((training_folder(repo, "smile") / "training.json").read_text())
    assert [m["lr"] for m in meta["members"]] == [0.013, 0.013]
    assert meta["suspect_weight"] == 0.5
    assert 0 < meta["crop_box_found_fraction"] <= 1


def test_bad_training_flags_are_refused_in_one_line(data_dir, tmp_path, capsys):
    for bad, says in (
        (["--device", "tpu"], "argument --device: expected cpu, cuda or cuda:N, got 'tpu'"),
        (["--lr", "0"], "argument --lr: expected a positive number, got '0'"),
        (["--suspect-weight", "2"], "argument --suspect-weight: expected a number from 0 to 1, got '2'"),
    ):
        with pytest.raises(SystemExit) as refused:
            train_main(["--task", "smile", *bad])
        assert refused.value.code == 2 and says in capsys.readouterr().err
    tiny = ["--task", "smile", "--limit", "50", "--data-dir", str(data_dir), "--workdir", str(tmp_path)]
    assert train_main(tiny) == 2
    assert capsys.readouterr().err.startswith("error: 50 training images are fewer than one batch of 128")
    assert not any(tmp_path.iterdir())  # refused before any checkpoint was written


def test_partial_labels_can_come_from_one_class_of_a_multi_class_task(data_dir, tmp_path):
    """Smile can learn from FER2013: happy reads as smile, every other expression as no smile."""
    from emolens_tools.training.data import load_split
    from emolens_tools.training.run import partial_labels

    recipe = dataclasses.replace(
        TASKS["smile"], partial_task="emotion", partial_class="smile", partial_source_class="happy"
    )
    partial = partial_labels(recipe, None, tmp_path, data_dir, 300)
    labels = load_split(TASKS["emotion"], "train", data_dir).labels[:300]
    np.testing.assert_array_equal(partial.is_target, labels == TASKS["emotion"].classes.index("happy"))
    assert 0 < partial.is_target.sum() < 300
    assert partial.target == TASKS["smile"].classes.index("smile")
    assert partial.images.shape == (300, TASKS["smile"].size, TASKS["smile"].size)


def test_serving_views_recut_faces_like_the_pipeline(data_dir, tmp_path):
    """Real training crops re-cut through detector + crop box: mostly found, close to but not
    the same as the dataset crop, cached, and never on the evaluation's backgrounds."""
    from emolens_tools.evaluation.run import BACKGROUNDS
    from emolens_tools.training.crops import TRAIN_BACKGROUNDS, serving_views
    from emolens_tools.training.data import load_split

    assert not set(TRAIN_BACKGROUNDS) & set(BACKGROUNDS)
    images = load_split(TASKS["emotion"], "train", data_dir).images[:40]
    crop_box = np.float32([24.0, 28.0, 40.0])
    cache = tmp_path / "views.npz"
    views, found = serving_views(images, crop_box, 4, seed=1, cache=cache, workers=1, progress=False)
    assert views.shape == images.shape and views.dtype == np.uint8
    assert found.mean() >= 0.9
    diff = np.abs(views[found].astype(int) - images[found]).mean(axis=(1, 2))
    assert 1.0 < np.median(diff) < 40.0
    np.testing.assert_array_equal(views[~found], images[~found])
    again, _ = serving_views(images, crop_box, 4, seed=1, cache=cache, workers=1, progress=False)
    np.testing.assert_array_equal(again, views)


def test_training_swaps_in_serving_views_at_the_given_share(monkeypatch, tmp_path):
    """With views, a share of each batch is the re-cut crop instead of the dataset crop."""
    from emolens_tools.training import loop
    from emolens_tools.training.data import Split

    spec = TASKS["smile"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 128, (256, 48, 48)).astype(np.uint8)
    views = (images + 128).astype(np.uint8)  # every view pixel >= 128, every crop pixel < 128
    labels = rng.integers(0, 2, 256)
    seen = []

    def spy(batch, rng):
        seen.append(batch.copy())
        return augment.augment_batch(batch, rng)

    monkeypatch.setattr(loop, "augment_batch", spy)
    split = Split(images, labels)
    for share, work in ((0.0, "a"), (0.5, "b"), (1.0, "c")):
        seen.clear()
        loop.train(
            spec, split, split, tmp_path / work, epochs=1, max_batches=2, progress=False, views=views, view_share=share
        )
        from_views = np.concatenate([(b.min(axis=(1, 2)) >= 128) for b in seen])
        assert len(from_views) == 2 * spec.batch_size
        assert from_views.mean() == pytest.approx(share, abs=0.1)


def test_teacher_warm_starts_from_its_committed_snapshot_on_a_new_machine(tmp_path):
    """A run whose checkpoint folder is gone continues from the snapshot, not from epoch 1."""
    import dataclasses

    from emolens_tools.training.data import Split
    from emolens_tools.training.loop import CheckpointShapeError, train
    from emolens_tools.training.tasks import TEACHERS

    spec = dataclasses.replace(TEACHERS["emotion"], channels=(8, 16), reps=(1, 1), batch_size=16)
    rng = np.random.default_rng(0)
    data = Split(rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), rng.integers(0, 7, 64).astype(np.int64))
    snapshot = tmp_path / "teachers" / "emotion.pt"
    first = train(spec, data, data, tmp_path / "machine-a", epochs=3, max_batches=2, progress=False, snapshot=snapshot)
    assert snapshot.exists() and len(first.history) == 3
    packed = torch.load(snapshot, weights_only=False)
    assert packed["epoch"] == 2 and "optimizer" not in packed
    assert all(v.dtype == torch.float16 for v in packed["model"].values() if v.is_floating_point())

    # "machine B": no checkpoint folder, a longer schedule; the first 3 epochs are not redone
    second = train(spec, data, data, tmp_path / "machine-b", epochs=5, max_batches=2, progress=False, snapshot=snapshot)
    assert [row["epoch"] for row in second.history] == [1, 2, 3, 4, 5]
    assert second.history[:3] == first.history
    assert torch.load(snapshot, weights_only=False)["epoch"] == 4

    other = dataclasses.replace(spec, channels=(8, 32))
    with pytest.raises(CheckpointShapeError, match="arch resnet"):
        train(other, data, data, tmp_path / "machine-c", epochs=5, max_batches=2, progress=False, snapshot=snapshot)


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path):
    """With the soft targets only (weight 1), the student learns the teacher's answers even
    where the hard labels say otherwise. The teacher answers for the augmented view the student
    sees (a flip swaps left and right), which the fixed hard labels cannot: without the teacher
    the student stays near chance on this rule."""
    import dataclasses

    from emolens_tools.training.data import Split
    from emolens_tools.training.loop import Distillation, predict_logits, train
    from emolens_tools.training.model import build_network

    spec = dataclasses.replace(TASKS["smile"], size=16, channels=(8, 16), reps=(1, 1), batch_size=32, lr=0.05)

    class LeftOrRight(torch.nn.Module):
        """A teacher with a learnable rule: is the left half brighter than the right half?"""

        def forward(self, x):
            d = (x[..., :8].mean(dim=(1, 2, 3)) - x[..., 8:].mean(dim=(1, 2, 3))) / 8
            return torch.stack([-d, d], dim=1)

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (512, 16, 16), dtype=np.uint8)
    images[:256, :, :8] //= 2  # half the images are darker on the left, half on the right
    images[256:, :, 8:] //= 2
    teacher = LeftOrRight()
    with torch.no_grad():
        teacher_says = teacher(torch.from_numpy(images.astype(np.float32)[:, None])).argmax(1).numpy()
    assert 0.3 < teacher_says.mean() < 0.7
    data = Split(images, (1 - teacher_says).astype(np.int64))  # the hard labels contradict the teacher

    def agreement(distill):
        workdir = tmp_path / str(distill is not None)
        train(spec, data, data, workdir, epochs=6, progress=False, bf16=False, distill=distill)
        student = build_network(spec)
        student.load_state_dict(torch.load(workdir / "last.pt", weights_only=False)["model"])
        return float((predict_logits(student, images).argmax(1) == teacher_says).mean())

    with_teacher = agreement(Distillation(teacher, temperature=2.0, weight=1.0))
    without = agreement(None)
    assert with_teacher > 0.9 and with_teacher - without > 0.3, (with_teacher, without)


def test_with_source_view_the_teacher_reads_the_dataset_crop_where_the_student_sees_the_recut_one(tmp_path):
    """Re-cut views are black here and the dataset crops bright: the teacher must be shown the
    bright crops under the same augmentation when source_view is on, the black ones when off."""
    from emolens_tools.training.data import Split
    from emolens_tools.training.loop import Distillation, train

    spec = dataclasses.replace(TASKS["smile"], size=16, channels=(8, 16), reps=(1, 1), batch_size=16, lr=0.01)

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.means: list[float] = []

        def forward(self, x):
            self.means.append(float(x.mean()))
            return torch.zeros(len(x), 2)

    data = Split(np.full((64, 16, 16), 200, np.uint8), np.zeros(64, np.int64))
    views = np.zeros_like(data.images)
    seen = {}
    for source_view in (True, False):
        teacher = Recording()
        distill = Distillation(teacher, weight=0.5, source_view=source_view)
        train(
            spec,
            data,
            data,
            tmp_path / str(source_view),
            epochs=1,
            progress=False,
            bf16=False,
            views=views,
            view_share=1.0,
            distill=distill,
        )
        seen[source_view] = float(np.mean(teacher.means))
    assert seen[True] > 60 and seen[False] < 30, seen


def test_partial_label_loss_is_the_log_loss_of_target_or_not():
    from emolens_tools.training.loop import PartialLabels

    partial = PartialLabels(np.zeros((2, 4, 4), np.uint8), np.array([True, False]), target=1)
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 30.0, 0.0]])
    p = torch.softmax(logits, dim=1)[:, 1]
    loss = partial.loss(logits, torch.tensor([True, False]))
    torch.testing.assert_close(loss[0], -torch.log(p[0]))
    # p(target) is 1 - 1e-13 here: the loss is large and finite, not inf or nan
    assert torch.isfinite(loss[1]) and loss[1] > 10


def test_partial_labels_teach_a_rule_the_main_labels_do_not_hold(tmp_path):
    """The main split's labels are noise; the partial faces say whether the top half is brighter
    (class 1) or not. Trained with them the network learns that rule; without, it cannot."""
    from emolens_tools.training.data import Split
    from emolens_tools.training.loop import PartialLabels, predict_logits, train

    spec = dataclasses.replace(TASKS["smile"], size=16, channels=(8, 16), reps=(1, 1), batch_size=32, lr=0.05)
    rng = np.random.default_rng(3)
    noise = Split(rng.integers(0, 256, (256, 16, 16)).astype(np.uint8), rng.integers(0, 2, 256))
    faces = rng.integers(0, 256, (512, 16, 16)).astype(np.uint8)
    top = rng.random(512) < 0.5
    faces[top, 8:] //= 4  # bottom darker: the top half is brighter
    faces[~top, :8] //= 4
    partial = PartialLabels(faces, top, target=1, per_batch=64)

    def accuracy(with_partial):
        workdir = tmp_path / str(with_partial)
        result = train(
            spec,
            noise,
            noise,
            workdir,
            epochs=12,
            progress=False,
            bf16=False,
            partial=partial if with_partial else None,
        )
        return float(((predict_logits(result.model, faces).argmax(1) == 1) == top).mean())

    learned, without = accuracy(True), accuracy(False)
    assert learned > 0.9 and learned - without > 0.3, (learned, without)


def test_label_audit_flags_flipped_labels_out_of_fold():
    """Two separable clusters with 5% of labels flipped: the out-of-fold probe contradicts the
    flipped ones and almost none of the rest."""
    from emolens_tools.training.noise import audit

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    features = rng.normal(0, 1, (2000, 16)) + labels[:, None] * 3.0
    flipped = rng.random(2000) < 0.05
    noisy = np.where(flipped, 1 - labels, labels)
    result = audit(features.astype(np.float32), noisy, classes=2)
    assert result.suspect[flipped].mean() > 0.8
    assert result.suspect[~flipped].mean() < 0.02
    assert 0.9 < result.probe_accuracy < 0.97  # the probe agrees with the clean part, not the flips


def test_suspect_weights_down_weight_only_contradicted_labels(tmp_path):
    from emolens_tools.training.data import Split
    from emolens_tools.training.model import ResFaceNet
    from emolens_tools.training.run import suspect_weights

    spec = dataclasses.replace(TASKS["smile"], channels=(8, 16), reps=(1, 1), suspect_weight=0.2)
    rng = np.random.default_rng(1)
    split = Split(rng.integers(0, 256, (40, 64, 64)).astype(np.uint8), rng.integers(0, 2, 40))
    cache = tmp_path / "audit.npz"
    weights = suspect_weights(spec, ResFaceNet(spec).eval(), split, cache)
    with np.load(cache) as saved:
        suspect = saved["suspect"]
    assert 0 < suspect.sum() < len(suspect)
    np.testing.assert_allclose(weights, np.where(suspect, 0.2, 1.0), rtol=1e-6)
    with pytest.raises(ValueError, match="audits 40 images"):
        suspect_weights(spec, ResFaceNet(spec).eval(), Split(split.images[:10], split.labels[:10]), cache)
