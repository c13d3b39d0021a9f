"""Train the digits feature extractor (bregzoo_zoo.digits_cnn.DigitsCNN) on the digits TRAIN split; print its test accuracy.

    .venv/bin/python benchmarks/train_digits_classifier.py [--out plugins/bregzoo_zoo/assets/digits_cnn.safetensors]

The weights (float32, ~0.4 MB) ship in the package; the test accuracy is stored in the file's metadata and
quoted in docs/images.md. CPU only, about a minute on 2 cores. Deterministic for a given torch build and seed.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bregzoo import create_dataset
from bregzoo_zoo.digits_cnn import ASSET, DigitsCNN


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translations by up to one pixel (pad with background -1, crop back to 8x8)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx, dy = torch.randint(0, 3, (2,), generator=gen).tolist()
    return padded[..., dy : dy + 8, dx : dx + 8]


def accuracy(net: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ASSET))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train, test = create_dataset("digits", split="train"), create_dataset("digits", split="test")
    x_tr, y_tr = train.to_float(train.pixels), train.labels
    x_te, y_te = test.to_float(test.pixels), test.labels

    net = DigitsCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(net(shift(x_tr[idx], gen)), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  train acc {accuracy(net, x_tr, y_tr):.4f}")

    test_acc = accuracy(net, x_te, y_te)
    print(f"digits test accuracy: {test_acc:.4f} ({round(test_acc * len(y_te))}/{len(y_te)}) "
          f"after {args.epochs} epochs, {time.time() - t0:.0f} s")
    from bregzoo import io  # atomic: a crash never leaves a half-written asset

    meta = {"test_accuracy": f"{test_acc:.4f}", "test_images": str(len(y_te)), "train_images": str(len(y_tr)),
            "epochs": str(args.epochs), "seed": str(args.seed), "trained_by": "benchmarks/train_digits_classifier.py"}
    io.save_file(net.state_dict(), args.out, metadata=meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
