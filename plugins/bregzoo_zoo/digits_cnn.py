"""The small CNN classifier of 8x8 digits whose penultimate layer is bregzoo's digits feature space for FID/KID/PRC.

Its weights ship in ``assets/digits_cnn.safetensors``; ``benchmarks/train_digits_classifier.py`` trains them on
the digits train split and records the test accuracy in the file's metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from bregzoo import BregzooError

ASSET = Path(__file__).parent / "assets" / "digits_cnn.safetensors"
FEATURE_DIM = 128


class DigitsCNN(nn.Module):
    """(B, 1, 8, 8) in [-1, 1] -> 10 logits; ``embed`` gives the 128-d penultimate features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 2x2
        )
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(64 * 2 * 2, FEATURE_DIM)
        self.out = nn.Linear(FEATURE_DIM, 10)

    def embed(self, x: Tensor) -> Tensor:
        h = rearrange(self.conv(x), "b c h w -> b (c h w)")
        return torch.relu(self.fc(self.drop(h)))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(self.embed(x)))


def load_digits_cnn(path: str | Path = ASSET) -> tuple[DigitsCNN, dict[str, str]]:
    """The trained classifier (eval mode, frozen) and the metadata stored with it (e.g. test_accuracy)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BregzooError(
            f"the digits classifier weights '{path}' are missing from the installed package; "
            "reinstall bregzoo or run benchmarks/train_digits_classifier.py"
        )
    net = DigitsCNN()
    net.load_state_dict(load_file(str(path)))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    return net.eval().requires_grad_(False), meta
