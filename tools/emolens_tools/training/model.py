"""The CNN shared by both tasks: per-image standardisation inside the graph, a small VGG body."""

from __future__ import annotations

import torch
from torch import nn

from emolens_tools.training.tasks import TaskSpec


class Standardize(nn.Module):
    """Raw 0..255 pixels -> zero mean, unit variance per image.

    Living inside the graph keeps the model contract (clients send raw pixels) and makes
    the network blind to global brightness and contrast, which is most of low light.
    """

    def __init__(self, eps: float = 4.0) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        return (x - mean) / (std + self.eps)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FaceNet(nn.Module):
    """[N, 1, H, W] raw pixels -> [N, C] logits."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__()
        self.norm = Standardize()
        layers: list[nn.Module] = []
        cin = 1
        for cout, reps in zip(spec.channels, spec.reps, strict=True):
            for _ in range(reps):
                layers += _conv(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(spec.dropout), nn.Linear(cin, len(spec.classes))
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.norm(image)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut, as in ResNet-18."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResFaceNet(nn.Module):
    """[N, 1, H, W] raw pixels -> [N, C] logits with residual stages (the teacher networks).

    A 3x3 stem at full resolution, then ``reps[i]`` basic blocks of ``channels[i]`` per stage,
    the first block of every stage after the first halving the resolution.
    """

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__()
        self.norm = Standardize()
        stem = spec.channels[0]
        layers: list[nn.Module] = [nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(True)]
        cin = stem
        for i, (cout, reps) in enumerate(zip(spec.channels, spec.reps, strict=True)):
            for r in range(reps):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and r == 0) else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(spec.dropout), nn.Linear(cin, len(spec.classes))
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.norm(image)))


def build_network(spec: TaskSpec) -> nn.Module:
    """The network ``spec.arch`` names, untrained."""
    if spec.arch == "vgg":
        return FaceNet(spec)
    if spec.arch == "resnet":
        return ResFaceNet(spec)
    raise ValueError(f"unknown network architecture {spec.arch!r}: expected 'vgg' or 'resnet'")


class Ensemble(nn.Module):
    """Networks of one task as one graph: the (weighted) mean of their class probabilities.

    With ``flip`` every network also sees the mirrored face, and those probabilities join the
    mean with the network's weight. The output is still called logits: it is the log of the mean
    probability, so a softmax of it gives that mean back. One network without ``flip`` passes
    through unchanged.
    """

    def __init__(self, members: list[nn.Module], flip: bool = False, weights: list[float] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one network")
        weights = [1.0] * len(members) if weights is None else list(weights)
        if len(weights) != len(members) or min(weights) <= 0:
            raise ValueError(f"expected one positive weight per network, got {weights} for {len(members)}")
        self.members = nn.ModuleList(members)
        self.flip = flip
        self.weights = [w / sum(weights) for w in weights]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1 and not self.flip:
            return self.members[0](image)
        # with flip, one batch of both views per network: [2N, C] -> [2, N, C] -> mean over views
        views = torch.cat([image, image.flip(3)]) if self.flip else image
        n_views = 2 if self.flip else 1
        probs = []
        for w, m in zip(self.weights, self.members, strict=True):
            p = m(views).softmax(dim=1)
            probs.append(w * p.reshape(n_views, -1, p.shape[1]).mean(dim=0))
        return torch.stack(probs).sum(dim=0).clamp_min(1e-12).log()
