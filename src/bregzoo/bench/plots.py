"""leaderboard.png: the primary metric per divergence per task (bars, ± std over seeds), then a
montage of each divergence's samples (seed 0; scatter for 2-D, an image grid for images), best
first, next to the teacher sampler's. leaderboard-curves.png, when the cells were evaluated during
training: the primary metric against training steps, per task, one line per seed and their mean."""

from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Any

from bregzoo import io
from bregzoo.bench.leaderboard import section_of, steps_of


def _bars(ax: Any, task: str, t: dict[str, Any]) -> None:
    p = t["primary"]
    rows = [r for r in t["rows"] if r["metrics"].get(p, {}).get("mean") is not None]
    names = [r["name"] for r in rows]
    means = [r["metrics"][p]["mean"] for r in rows]
    stds = [r["metrics"][p]["std"] or 0.0 for r in rows]  # None (one seed): no error bar
    colors = ["tab:red" if r["divergence"] == "reverse-kl" else "tab:blue" for r in rows]
    ax.barh(range(len(rows)), means, xerr=stds, color=colors, alpha=0.8)
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()  # best at the top
    teacher = t["teacher"]["metrics"].get(p, {}).get("mean")
    if teacher is not None:
        ax.axvline(teacher, color="k", ls="--", lw=1, label=f"teacher ({t['teacher']['steps']} steps)")
    floor = ((t.get("floor") or {}).get("metrics") or {}).get(p, {}).get("mean")
    if floor is not None:  # two independent sets of exact samples: no student can read better than this
        ax.axvline(floor, color="tab:green", ls=":", lw=1.2, label="exact samples (noise floor)")
    if teacher is not None or floor is not None:
        ax.legend(fontsize=7, loc="lower right")
    if means and min(means) > 0 and max(means) / min(means) > 50:
        ax.set_xscale("log")
    ax.set_title(f"{task}: {p} ({'higher' if t['higher_is_better'] else 'lower'} is better)", fontsize=9)


def _modes(task: str) -> list[tuple[float, float]]:
    """The task's mixture means (first two coordinates), or none when it has no modes to mark."""
    from bregzoo.api import create_dataset
    from bregzoo.errors import BregzooError

    try:
        means = getattr(create_dataset(task), "means", None)
    except BregzooError:
        return []
    return [] if means is None or means.shape[1] < 2 else [(float(m[0]), float(m[1])) for m in means]


def _scatter(ax: Any, pts: list, title: str, lim: float, modes: list[tuple[float, float]] = ()) -> None:
    if pts:
        xs, ys = zip(*[(p[0], p[1]) for p in pts])
        ax.scatter(xs, ys, s=2, alpha=0.5, linewidths=0)
    if modes:  # a dropped mode shows as a red cross with no samples around it
        mx, my = zip(*modes)
        ax.scatter(mx, my, marker="x", s=14, color="tab:red", linewidths=0.8)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
    ax.set_title(title, fontsize=7)


def _grid(ax: Any, imgs: list, title: str) -> None:
    """A 4x4 grid of images (C, H, W) in [-1, 1]."""
    import torch
    from einops import rearrange

    if imgs:
        x = torch.tensor(imgs[:16]).clamp(-1, 1) * 0.5 + 0.5
        side = int(len(x) ** 0.5)
        g = rearrange(x[: side * side], "(r c) ch h w -> (r h) (c w) ch", r=side)
        ax.imshow((g.squeeze(-1) if g.shape[-1] == 1 else g).numpy(), cmap="gray")
    ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=7)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Render ``fig`` to PNG, close it, and write it to ``path`` atomically."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _pyplot().close(fig)
    return io.write_bytes(path, buf.getvalue())


def _cell_key(section: Any, rec: dict[str, Any]) -> tuple:
    """What ties a cell record to its leaderboard row: (section, divergence, estimator, k)."""
    return section(rec), rec["divergence"], rec["estimator"], steps_of(rec)


def save_png(path: Path, board: dict[str, Any], results: list[dict[str, Any]]) -> Path:
    """Write the bar charts and the sample montage to ``path`` (atomically)."""
    plt = _pyplot()
    tasks = list(board["tasks"])
    section = section_of(results)
    first_seed: dict[str, int] = {}
    for r in results:
        first_seed[section(r)] = min(r["seed"], first_seed.get(section(r), r["seed"]))
    seed0 = {_cell_key(section, r): r for r in results
             if r.get("status") == "ok" and r["seed"] == first_seed[section(r)]}
    raw_task = {section(r): r["task"] for r in results}
    cell = lambda t, row: seed0.get((t, row["divergence"], row["estimator"], row.get("student_steps", 1)), {})  # noqa: E731
    montage = [t for t in tasks if any(cell(t, row).get("samples")
                                       for row in board["tasks"][t]["rows"])]
    ncols = max([len(tasks)] + [len(board["tasks"][t]["rows"]) + 1 for t in montage])
    fig = plt.figure(figsize=(max(4.5 * len(tasks), 1.5 * ncols), 4.5 + 1.9 * len(montage)))
    subs = fig.subfigures(1 + len(montage), 1, height_ratios=[4.5] + [1.9] * len(montage), squeeze=False)[:, 0]
    axes = subs[0].subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        _bars(ax, task, board["tasks"][task])
    for sub, task in zip(subs[1:], montage):
        rows = board["tasks"][task]["rows"]
        panels = [(f"{task}: teacher", next((r.get("teacher_samples") for k, r in seed0.items() if k[0] == task), []))]
        panels += [(f"{'failed' if row['rank'] is None else '#' + str(row['rank'])} {row['name']}",
                    cell(task, row).get("samples", [])) for row in rows]
        images = any(pts and not isinstance(pts[0][0], (int, float)) for _, pts in panels)
        allv = [] if images else [abs(v) for _, pts in panels for p in pts for v in p[:2]]
        lim = (sorted(allv)[int(0.99 * (len(allv) - 1))] * 1.15 + 0.1) if allv else 1.0
        axs = sub.subplots(1, ncols, squeeze=False)[0]
        modes = [] if images else _modes(raw_task.get(task, task))
        for ax, (title, pts) in zip(axs, panels):
            if images:
                _grid(ax, pts, title)
            else:
                _scatter(ax, pts, title, lim, modes)
        for ax in axs[len(panels):]:
            ax.axis("off")
    smoke = " (a smoke test of the pipeline, not a ranking)" if board.get("smoke") else ""
    fig.suptitle(f"bregzoo bench: suite {board['suite']}{smoke} (samples: seed 0, best first; x: modes)",
                 fontsize=10)
    return _save(fig, path)


def curves_of(board: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, list]]]:
    """``{section: {row name: {seed: [(step, primary), ...]}}}`` for the rows whose cells kept a curve of
    two or more evaluations (the suite set ``train.eval_every`` below ``train.steps``)."""
    section = section_of(results)
    row_name = {(task, row["divergence"], row["estimator"], row["student_steps"]): row["name"]
                for task, t in board["tasks"].items() for row in t["rows"]}
    out: dict[str, dict[str, dict[int, list]]] = {}
    for r in results:
        key = _cell_key(section, r)
        if r.get("status") != "ok" or key not in row_name:
            continue
        p = board["tasks"][key[0]]["primary"]
        pts = [(c["step"], c[p]) for c in r.get("curve") or [] if c.get(p) is not None]
        if len(pts) >= 2:
            out.setdefault(key[0], {}).setdefault(row_name[key], {})[r["seed"]] = sorted(pts)
    return {task: {row["name"]: out[task][row["name"]] for row in t["rows"] if row["name"] in out[task]}
            for task, t in board["tasks"].items() if task in out}  # in the board's order: sections, then rank


def save_curves_png(path: Path, board: dict[str, Any], results: list[dict[str, Any]]) -> Path | None:
    """Write the curves figure to ``path`` (atomically); None, and nothing written, when no cell has a curve."""
    curves = curves_of(board, results)
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.0 * len(curves), 4.0), squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = sorted({name for rows in curves.values() for name in rows})
    colors = {name: cycle[i % len(cycle)] for i, name in enumerate(names)}  # one colour per row on every task
    for ax, (task, rows) in zip(axes[0], curves.items()):
        t = board["tasks"][task]
        p = t["primary"]
        for name, seeds in rows.items():
            color = colors[name]
            for pts in seeds.values():
                ax.plot(*zip(*pts), color=color, lw=0.7, alpha=0.35)
            by_step = [dict(pts) for pts in seeds.values()]
            common = sorted(set.intersection(*(set(d) for d in by_step)))
            mean = [sum(d[s] for d in by_step) / len(by_step) for s in common]
            ax.plot(common, mean, color=color, lw=2, marker="o", ms=3, label=f"{name} (mean of {len(seeds)})")
        teacher = t["teacher"]["metrics"].get(p, {}).get("mean")
        if teacher is not None:
            ax.axhline(teacher, color="k", ls="--", lw=1, label=f"teacher ({t['teacher']['steps']} steps)")
        floor = ((t.get("floor") or {}).get("metrics") or {}).get(p, {}).get("mean")
        if floor is not None:
            ax.axhline(floor, color="tab:green", ls=":", lw=1.2, label="exact samples (noise floor)")
        ax.set_xlabel("training step")
        ax.set_ylabel(p)
        ax.set_title(f"{task}: {p} ({'higher' if t['higher_is_better'] else 'lower'} is better)", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"bregzoo bench: suite {board['suite']}, the student's {p} during training "
                 "(thin: each seed; thick: their mean)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
