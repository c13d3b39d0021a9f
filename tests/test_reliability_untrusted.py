"""Untrusted files: a run directory from someone else cannot run code when it is resumed.

Accelerate writes a checkpoint's optimizer and RNG state as torch pickles (``optimizer*.bin``,
``random_states_*.pkl``). bregzoo resumes through ``Accelerator.load_state``, which reads them with
``torch.load(weights_only=True)``: a pickle that names any other global is refused before it runs.
The source-level guarantees (no unsafe loader anywhere) are in tests/test_reliability_static.py; the
CIFAR-10 python reader's is tests/test_images.py::test_malicious_cifar_pickle_does_not_execute.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bregzoo_cli.app import get_app

TINY = ["--backbone", "mlp:width=16,depth=1", "--batch-size", "16", "--no-check", "-q",
        "--set", "train.checkpoint_every=2", "--set", "train.log_every=1000", "--set", "train.eval_every=1000",
        "--set", "train.fake_updates=1", "--set", "eval.samples=32", "--set", "eval.teacher_steps=2",
        "--set", 'eval.metrics=["mmd"]', "--set", 'eval.final_metrics=["mmd"]']


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# optimizer.bin is needed: the resume stops with one line. random_states_0.pkl (Python/numpy/torch global
# RNGs) is not: Accelerate skips a state it cannot load, and bregzoo's training noise comes from its own
# generator, saved in train_state.safetensors, so the resume goes on.
@pytest.mark.parametrize("victim, exit_code", [("optimizer.bin", 2), ("random_states_0.pkl", 0)])
def test_malicious_pickle_in_a_checkpoint_does_not_run_on_resume(tmp_path, victim, exit_code):
    run = tmp_path / "run"
    result = CliRunner().invoke(get_app(), ["train", "--out", str(run), "--steps", "2", *TINY])
    assert result.exit_code == 0, result.output
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_Evil(tmp_path / "self-test")))  # the payload does work when unpickled
    assert (tmp_path / "self-test").exists()

    (run / "checkpoints" / "step-0000002" / victim).write_bytes(pickle.dumps(_Evil(marker)))
    result = CliRunner().invoke(get_app(), ["train", "--resume", str(run), "--steps", "4", "-q"])

    assert not marker.exists(), "the pickle in the checkpoint ran"
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert "Traceback" not in result.output
    if exit_code == 2:
        (line,) = result.stderr.splitlines()
        assert "step-0000002" in line, line
    shutil.rmtree(run)


def test_a_generator_whose_config_describes_a_far_larger_network_is_refused_before_one_is_built(tmp_path, monkeypatch):
    """A file's header names the config its tensors were trained with; a crafted one (an mlp of width 20000:
    billions of parameters, three networks) must not make `bregzoo sample` allocate it. The shapes in the
    header are compared with the network built on the meta device first."""
    from bregzoo import io
    from bregzoo.config import RunConfig
    from bregzoo.train.build import build
    from bregzoo.train.export import save_student

    cfg = RunConfig().replace(backbone="mlp:width=16,depth=1")
    weights = tmp_path / "g.safetensors"
    save_student(weights, build(cfg).generator, cfg, step=4)
    meta = io.read_metadata(weights)
    meta["config"] = cfg.replace(backbone="mlp:width=20000").to_json()
    io.save_file(io.load_file(weights), weights, metadata=meta)

    def no_real_network(*args, **kwargs):
        raise AssertionError("build() ran: the networks of the crafted config were allocated")

    monkeypatch.setattr("bregzoo.train.export.build", no_real_network)
    result = CliRunner().invoke(get_app(), ["sample", str(weights), "--out", str(tmp_path / "s.pt")])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert "does not match the network its config describes" in lines[0] and "20000" in lines[0], lines[0]
    assert "numbers in the network" in lines[0]
    assert not (tmp_path / "s.pt").exists()
