"""Bad input through the real CLI: exit code 2, one line on stderr naming the problem and the fix, no
traceback, and no existing file modified.

Every case runs ``get_app()`` with CliRunner in its own folder; the folder's files (bytes and mtimes) are
snapshotted before and compared after, and a case may not create files either.

The unwritable output directory: tests run as root, and root may write anywhere that permissions govern,
so the case asks for ``--out`` *under a regular file* (``afile/run``): mkdir fails with ENOTDIR for
every user, root included.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bregzoo import io
from bregzoo_cli.app import get_app
from conftest import TINY_TRAIN


ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256))  # a compiled program's header: not UTF-8


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])


def _widen(path: Path) -> None:
    """Rewrite a weights file with every tensor doubled along dim 0: another architecture, same metadata."""
    meta = io.read_metadata(path)
    io.save_file({k: torch.cat([v, v]) if v.ndim else v for k, v in io.load_file(path).items()}, path, metadata=meta)


def _cifar_python(folder: Path, shape: tuple[int, int]) -> None:
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        (d / name).write_bytes(pickle.dumps({b"data": np.zeros(shape, np.uint8), b"labels": [0, 1]}, protocol=2))


# Each case: (id, setup(folder, finished_run), argv, words the one line must contain).
CKPT = "run/checkpoints/step-0000004"
CASES = [
    ("unknown-divergence", None, ["train", "--divergence", "reverse-k"], ["'reverse-k'", "did you mean 'reverse-kl'"]),
    ("unknown-estimator", None, ["train", "--estimator", "clasifier"], ["'clasifier'", "did you mean 'classifier'"]),
    ("unknown-backbone", None, ["train", "--backbone", "mpl"], ["'mpl'", "did you mean 'mlp'"]),
    ("unknown-task", None, ["train", "--task", "gmm9"], ["'gmm9'", "did you mean 'gmm8'"]),
    ("unknown-metric", None, ["train", "--set", 'eval.final_metrics=["mmdd"]'], ["'mmdd'", "did you mean 'mmd'"]),
    ("malformed-spec", None, ["train", "--divergence", "power:alpha"], ["'power:alpha'", "key=value"]),
    ("repeated-spec-key", None, ["train", "--divergence", "power:alpha=1,alpha=2"], ["alpha"]),
    ("alpha-out-of-domain", None, ["train", "--divergence", "power:alpha=-1"], ["alpha", "> -1"]),
    ("zero-steps", None, ["train", "--steps", "0"], ["train.steps", "> 0"]),
    ("negative-batch", None, ["train", "--batch-size", "-4"], ["train.batch_size", "> 0"]),
    ("bad-mixed-precision", None, ["train", "--mixed-precision", "fp8"], ["fp8", "'bf16'"]),
    ("missing-config", None, ["train", "--config", "nope.toml"], ["nope.toml", "does not exist"]),
    ("empty-config", lambda d, r: (d / "c.toml").write_text(""), ["train", "--config", "c.toml"], ["c.toml", "empty"]),
    ("corrupt-toml", lambda d, r: (d / "c.toml").write_text("[train\nsteps = = 3"), ["train", "--config", "c.toml"],
     ["TOML"]),
    ("corrupt-json", lambda d, r: (d / "c.json").write_text('{"train": '), ["train", "--config", "c.json"],
     ["c.json", "JSON"]),
    ("unknown-config-key", lambda d, r: (d / "c.toml").write_text("[train]\nstepz = 3\n"),
     ["train", "--config", "c.toml"], ["'train.stepz'", "valid keys", "steps"]),
    ("unknown-set-key", None, ["train", "--set", "train.stepz=3"], ["'train.stepz'", "steps"]),
    ("malformed-set", None, ["train", "--set", "train.steps"], ["KEY=VALUE"]),
    ("resume-incompatible-config", lambda d, r: shutil.copytree(r, d / "run"),
     ["train", "--resume", "run", "--divergence", "lsif"], ["cannot change divergence", "resum"]),
    ("resume-not-a-run", lambda d, r: (d / "empty").mkdir(), ["train", "--resume", "empty"],
     ["empty", "not a bregzoo run"]),
    ("resume-truncated-checkpoint", lambda d, r: (shutil.copytree(r, d / "run"), _truncate(d / CKPT / "model.safetensors")),
     ["train", "--resume", "run", "--steps", "6"], ["step-0000004", "checkpoint"]),
    ("resume-wrong-architecture", lambda d, r: (shutil.copytree(r, d / "run"), _widen(d / CKPT / "model.safetensors")),
     ["train", "--resume", "run", "--steps", "6"], ["step-0000004", "checkpoint"]),
    ("sample-truncated-safetensors", lambda d, r: (shutil.copy(r / "generator.safetensors", d / "g.safetensors"),
                                                   _truncate(d / "g.safetensors")),
     ["sample", "g.safetensors", "--out", "s.pt"], ["g.safetensors", "safetensors"]),
    ("sample-corrupt-safetensors", lambda d, r: (d / "g.safetensors").write_bytes(os.urandom(64)),
     ["sample", "g.safetensors", "--out", "s.pt"], ["g.safetensors"]),
    ("sample-wrong-architecture", lambda d, r: (shutil.copy(r / "generator.safetensors", d / "g.safetensors"),
                                                _widen(d / "g.safetensors")),
     ["sample", "g.safetensors", "--out", "s.pt"], ["g.safetensors", "does not match"]),
    ("sample-zero", lambda d, r: shutil.copy(r / "generator.safetensors", d / "g.safetensors"),
     ["sample", "g.safetensors", "-n", "0"], ["-n", ">= 1"]),
    ("missing-dataset-dir", None, ["train", "--task", "cifar10:root=nowhere", "--backbone", "unet"],
     ["nowhere", "download"]),
    ("dataset-wrong-image-shape", lambda d, r: _cifar_python(d / "cifar", (2, 784)),
     ["train", "--task", "cifar10:root=cifar", "--backbone", "unet"], ["(2, 784)", "3x32x32"]),
    ("out-exists-not-a-run", lambda d, r: ((d / "mine").mkdir(), (d / "mine" / "notes.txt").write_text("keep")),
     ["train", "--out", "mine", "--steps", "2"], ["mine", "--overwrite"]),
    ("out-unwritable", lambda d, r: (d / "afile").write_text("a file, not a folder"),
     ["train", "--out", "afile/run", "--steps", "2"], ["afile/run", "--out"]),
    ("missing-fid-weights", None,
     ["train", "--set", 'eval.final_metrics=["fid:feature_extractor=inception,inception_weights=missing.pth"]'],
     ["missing.pth", "does not exist"]),
    ("bench-missing-suite", None, ["bench", "--suite", "nope.toml"], ["nope.toml", "does not exist"]),
    # What a new user still got past, or got a traceback or typer's box for:
    ("binary-config", lambda d, r: (d / "prog").write_bytes(ELF), ["train", "--config", "prog"], ["prog", "not UTF-8"]),
    ("deeply-nested-json-config", lambda d, r: (d / "c.json").write_text("[" * 100_000),
     ["train", "--config", "c.json"], ["c.json", "nests too deeply"]),
    ("unknown-divergence-parameter", None, ["train", "--divergence", "power:beta=2"], ["'power'", "'beta'", "alpha"]),
    ("parameter-of-parameterless-divergence", None, ["train", "--divergence", "kl:alpha=1"], ["'kl'", "'alpha'"]),
    ("unknown-task-far-from-any", None, ["train", "--task", "nosuch"], ["'nosuch'", "Known:", "gmm8"]),
    ("unknown-backbone-parameter", None, ["train", "--backbone", "mlp:bogus=1"], ["'bogus'", "width"]),
    ("backbone-parameter-of-the-wrong-type", None, ["train", "--backbone", "mlp:width=abc"],
     ["'mlp'", "width must be int", "'abc'"]),
    ("unknown-teacher-parameter", None, ["train", "--teacher", "analytic-gmm:x=1"], ["'analytic-gmm'", "'x'"]),
    ("unknown-estimator-h", None, ["train", "--estimator", "bregman:h=nosuch"], ["'nosuch'", "divergence"]),
    ("unknown-schedule-parameter", None, ["train", "--schedule", "edm:foo=1"], ["'edm'", "'foo'", "t_max"]),
    ("schedule-t-min-above-t-max", None, ["train", "--schedule", "edm:t_min=5,t_max=1"], ["t_min < t_max"]),
    ("schedule-nan", None, ["train", "--schedule", "edm:t_max=nan"], ["t_max", "finite"]),
    ("unhashable-spec-value", None, ["train", "--divergence", "power:alpha={[1]:2}"], ["alpha", "> -1"]),
    ("seed-beyond-64-bit", None, ["train", "--seed", str(2**64)], ["train.seed", "2**63"]),
    ("seed-of-2-to-the-70", None, ["train", "--seed", str(2**70)], ["train.seed", "2**63", str(2**70)]),
    ("steps-not-a-number", None, ["train", "--steps", "abc"], ["'--steps'", "integer", "train --help"]),
    ("misspelt-option", None, ["train", "--stpes", "3"], ["--stpes", "--steps", "train --help"]),
    ("unknown-command", None, ["trian"], ["'trian'", "--help"]),
    # Tracebacks, unbounded reads and lost runs that were still reachable (issue O):
    ("bool-as-number", None, ["train", "--divergence", "power:alpha=true"], ["alpha", "finite number"]),
    ("config-from-a-device", None, ["train", "--config", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("out-is-a-finished-run", lambda d, r: shutil.copytree(r, d / "run"), ["train", "--out", "run"],
     ["already holds a bregzoo run", "--resume run", "--overwrite"]),
    ("sample-unknown-device", lambda d, r: shutil.copy(r / "generator.safetensors", d / "g.safetensors"),
     ["sample", "g.safetensors", "--device", "banana"], ["'banana'", "not a device"]),
    ("sample-absent-cuda-device", lambda d, r: shutil.copy(r / "generator.safetensors", d / "g.safetensors"),
     ["sample", "g.safetensors", "--device", "cuda:7"], ["cuda:7", "CUDA device"]),
    ("eval-zero-batch", lambda d, r: shutil.copytree(r, d / "run"), ["eval", "run", "--batch", "0"], ["--batch", ">= 1"]),
    ("eval-negative-threads", lambda d, r: shutil.copytree(r, d / "run"), ["eval", "run", "--threads", "-3"],
     ["--threads", ">= 0"]),
]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _dirs(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_dir()}


def _refused(folder: Path, argv: list[str], words: list[str]) -> str:
    """Run argv in ``folder``; assert exit 2, one 'error:' line with every word, and nothing touched."""
    before, dirs = _snapshot(folder), _dirs(folder)
    if argv[0] == "train" and "--resume" not in argv:  # the case's own options come last and win
        argv = ["train", "--steps", "2", *TINY_TRAIN, *argv[1:]]
    result = CliRunner().invoke(get_app(), argv)

    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], f"{word!r} missing from: {lines[0]}"
    assert _snapshot(folder) == before, "an existing file was modified, or a file was created"
    assert _dirs(folder) == dirs, "a directory was created or removed"
    return lines[0]


@pytest.mark.parametrize("setup, argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path, monkeypatch, finished_run, setup, argv, words):
    if setup is not None:
        setup(tmp_path, finished_run)
    monkeypatch.chdir(tmp_path)
    _refused(tmp_path, argv, words)


# The train cases that only a run can find: they need the data, a checkpoint, or the output directory,
# which --dry-run does not touch. Every other train case must be refused by --dry-run too.
RUN_ONLY = {"out-is-a-finished-run", "resume-truncated-checkpoint", "resume-wrong-architecture", "missing-dataset-dir",
            "dataset-wrong-image-shape", "out-exists-not-a-run", "out-unwritable"}
DRY_CASES = [c for c in CASES if c[2][0] == "train" and c[0] not in RUN_ONLY]


@pytest.mark.parametrize("setup, argv, words", [c[1:] for c in DRY_CASES], ids=[c[0] for c in DRY_CASES])
def test_dry_run_refuses_what_a_run_refuses_with_the_same_line(tmp_path, monkeypatch, finished_run, setup, argv,
                                                              words):
    if setup is not None:
        setup(tmp_path, finished_run)
    monkeypatch.chdir(tmp_path)
    assert _refused(tmp_path, [*argv, "--dry-run"], words) == _refused(tmp_path, argv, words)


def test_the_run_only_cases_exist():
    assert RUN_ONLY <= {c[0] for c in CASES} and len(DRY_CASES) >= 30


def test_there_are_at_least_20_cases():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)
