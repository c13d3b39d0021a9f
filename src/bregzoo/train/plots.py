"""samples.png: teacher samples next to student samples, the mixture's modes marked."""

from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from bregzoo import io


def _scatter(ax: Any, x: Tensor, dataset: Any, title: str, lim: float) -> None:
    x = rearrange(x.detach().float().cpu(), "n ... -> n (...)")
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.4, color="tab:blue", linewidths=0)
    means = getattr(dataset, "means", None)
    if means is not None and means.shape[1] >= 2:
        m = means.detach().cpu().float()
        ax.scatter(m[:, 0].numpy(), m[:, 1].numpy(), marker="x", s=60, color="tab:red", label="modes")
        ax.legend(loc="upper right", fontsize=7)
    ax.set(title=title, xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")


def _grid(ax: Any, x: Tensor, title: str) -> None:
    x = x[:64].detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5
    side = int(len(x) ** 0.5)
    img = rearrange(x[: side * side], "(r c) ch h w -> (r h) (c w) ch", r=side)
    ax.imshow((img.squeeze(-1) if img.shape[-1] == 1 else img).numpy(), cmap="gray")  # matplotlib wants arrays
    ax.set(title=title, xticks=[], yticks=[])


def save_samples_png(path: Path, panels: dict[str, Tensor], dataset: Any, suptitle: str = "") -> Path:
    """One panel per entry of ``panels`` (title -> samples): scatter for vectors, grid for images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    vectors = all(x.ndim == 2 for x in panels.values())
    if vectors:
        allx = torch.cat([rearrange(x.detach().float().cpu(), "n ... -> n (...)")[:, :2] for x in panels.values()])
        lim = float(torch.quantile(allx.abs().flatten(), 0.995)) * 1.15 + 0.1
    for ax, (title, x) in zip(axes[0], panels.items()):
        if vectors:
            _scatter(ax, x, dataset, title, lim)
        else:
            _grid(ax, x, title)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return io.write_bytes(path, buf.getvalue())
