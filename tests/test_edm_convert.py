"""``bregzoo convert edm-pkl``: NVlabs/edm pickles in their own layout, built here, to safetensors directories.

The official files are ``pickle.dump({'ema': net, 'loss_fn': ..., 'augment_pipe': ..., 'dataset_kwargs': ...})``
where every network module pickles through ``torch_utils.persistence``: a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with meta = {type, version, module_src (the source
of training/networks.py), class_name, state (the module's __dict__, with _init_args/_init_kwargs)}. The pickles
below are written the same way, from bregzoo's own modules (which carry EDM's class and attribute names); their
embedded "source" would create a marker file if anything ran it.
"""

from __future__ import annotations

import io as pyio
import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bregzoo import create_teacher
from bregzoo import io as bio
from bregzoo.schedules import EDMSchedule
from bregzoo_zoo.edm_precond import build_precond, split_init_kwargs

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_KWARGS = dict(img_resolution=8, img_channels=3, label_dim=0, use_fp16=False, dropout=0.13, augment_dim=9,
                   model_type="SongUNet", embedding_type="positional", encoder_type="standard",
                   decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1], model_channels=16,
                   channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4])


def tiny_network(precond: str = "EDMPrecond", seed: int = 0, **overrides) -> tuple[torch.nn.Module, dict]:
    """A tiny official-style network with perturbed weights, and the init kwargs EDM would record."""
    kwargs = dict(TINY_KWARGS, **overrides)
    torch.manual_seed(seed)
    pre, model = split_init_kwargs(precond, kwargs)
    net = build_precond(precond, pre, "SongUNet", model).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net, kwargs


def _persistence_module(monkeypatch) -> types.FunctionType:
    """``torch_utils.persistence`` with its reconstruct hook, importable while the test pickles."""
    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # EDM's would exec meta['module_src']; bregzoo must never call it
        raise AssertionError("the real reconstruct hook was called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    monkeypatch.setitem(sys.modules, "torch_utils", pkg)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", mod)
    return _reconstruct_persistent_obj


def _plain_module(monkeypatch) -> types.ModuleType:
    """A ``training.networks`` whose classes carry EDM's names: for pickles of classes by reference."""
    pkg, mod = types.ModuleType("training"), types.ModuleType("training.networks")
    pkg.networks = mod
    monkeypatch.setitem(sys.modules, "training", pkg)
    monkeypatch.setitem(sys.modules, "training.networks", mod)
    return mod


def edm_pickle(path: Path, net: torch.nn.Module, init_kwargs: dict, monkeypatch, marker: Path,
               layout: str = "persistent", extra: dict | None = None) -> Path:
    """Write ``{'ema': net, ...}`` the way EDM's training loop does (``layout='persistent'``), or with the
    network classes pickled by reference to ``training.networks`` (``'plain'``)."""
    source = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"  # the 'module source' carried along
    hook = _persistence_module(monkeypatch) if layout == "persistent" else None
    plain = _plain_module(monkeypatch) if layout == "plain" else None

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if not (isinstance(obj, torch.nn.Module) and type(obj).__module__.startswith("bregzoo_zoo.")):
                return NotImplemented
            state = dict(obj.__dict__)
            state["_init_args"], state["_init_kwargs"] = (), (init_kwargs if obj is net else {})
            name = type(obj).__name__
            if hook is not None:
                meta = dict(type="class", version=6, module_src=source, class_name=name, state=state)
                return hook, (meta,)
            cls = getattr(plain, name, None) or type(name, (), {"__module__": "training.networks", "__qualname__": name})
            setattr(plain, name, cls)
            return cls, (), state

    buf = pyio.BytesIO()
    data = {"ema": net, "loss_fn": None, "augment_pipe": None,
            "dataset_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "cifar10-32x32.zip"}}
    Pickler(buf, protocol=4).dump(dict(data, **(extra or {})))
    path.write_bytes(buf.getvalue())
    return path


def invoke(*args):
    from bregzoo_cli.app import get_app

    return CliRunner().invoke(get_app(), [str(a) for a in args])


# -- the trust flag ------------------------------------------------------------------------------------
def test_without_trust_pickle_the_command_refuses_in_one_line(tmp_path, monkeypatch):
    net, kwargs = tiny_network()
    pkl = edm_pickle(tmp_path / "net.pkl", net, kwargs, monkeypatch, tmp_path / "RAN")
    res = invoke("convert", "edm-pkl", pkl, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and "--trust-pickle" in line and "run any code" in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "RAN").exists()


# -- conversion ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["persistent", "plain"])
def test_converts_the_official_layout_to_safetensors_and_runs_none_of_it(tmp_path, monkeypatch, layout):
    net, kwargs = tiny_network()
    marker = tmp_path / "RAN"
    pkl = edm_pickle(tmp_path / "network-snapshot.pkl", net, kwargs, monkeypatch, marker, layout)
    out = tmp_path / "teacher"
    res = invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", out, "--dataset", "digits")
    assert res.exit_code == 0, res.output
    assert "EDMPrecond/SongUNet" in res.output and f"bregzoo train --teacher {out} --backbone edm" in res.output
    assert not marker.exists()  # the source the pickle carries never ran
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "teacher.safetensors"]

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["bregzoo_converted_teacher"] == 1 and cfg["teacher"] == cfg["backbone"] == "edm"
    assert cfg["dataset"] == "digits" and cfg["data_shape"] == [3, 8, 8] and cfg["schedule"] == "edm"
    assert cfg["network"]["precond"] == "EDMPrecond" and cfg["network"]["model_type"] == "SongUNet"
    assert cfg["network"]["precond_kwargs"] == {"img_resolution": 8, "img_channels": 3, "label_dim": 0, "use_fp16": False}
    assert cfg["network"]["model_kwargs"]["channel_mult"] == [1, 2] and cfg["network"]["model_kwargs"]["augment_dim"] == 9
    assert cfg["source"]["sha256"] == __import__("hashlib").sha256(pkl.read_bytes()).hexdigest()

    weights = bio.load_file(out / "teacher.safetensors")  # EDM's own names, every tensor bit for bit
    want = net.state_dict()
    assert sorted(weights) == sorted(want)
    assert "model.enc.8x8_conv.weight" in weights and "model.enc.4x4_down.conv0.resample_filter" in weights
    assert all(torch.equal(weights[k], v) for k, v in want.items())

    teacher = create_teacher("edm", dataset=None, schedule=EDMSchedule(), path=str(out))
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0.01, 1.0, 50.0])
    with torch.no_grad():
        torch.testing.assert_close(teacher.denoise(x, t), net(x, t), rtol=0, atol=0)


def test_the_converted_directory_loads_without_unpickling(tmp_path, monkeypatch):
    net, kwargs = tiny_network()
    pkl = edm_pickle(tmp_path / "net.pkl", net, kwargs, monkeypatch, tmp_path / "RAN")
    assert invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", tmp_path / "t").exit_code == 0
    pkl.unlink()

    def refuse(*a, **k):
        raise AssertionError("unpickled while loading a converted directory")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr("bregzoo_zoo.edm_pickle._EDMPickleReader.load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    teacher = create_teacher("edm", dataset=None, schedule=EDMSchedule(), path=str(tmp_path / "t"))
    assert teacher.data_shape == (3, 8, 8)


def test_vp_and_ve_networks_convert_with_their_preconditioning(tmp_path, monkeypatch):
    for precond in ("VPPrecond", "VEPrecond"):
        net, kwargs = tiny_network(precond, embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
                                   resample_filter=[1, 3, 3, 1])
        pkl = edm_pickle(tmp_path / f"{precond}.pkl", net, kwargs, monkeypatch, tmp_path / "RAN")
        out = tmp_path / precond
        assert invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", out).exit_code == 0
        teacher = create_teacher("edm", dataset=None, schedule=EDMSchedule(), path=str(out))
        x, s = torch.randn(2, 3, 8, 8), torch.tensor([0.1, 20.0])
        with torch.no_grad():
            torch.testing.assert_close(teacher.denoise(x, s), net(x, s), rtol=0, atol=0)
        assert json.loads((out / "config.json").read_text())["dataset"] is None  # not 3x32x32: no guess


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_does_not_run(tmp_path):
    """Even with --trust-pickle the reader resolves tensors and nothing else: os.system stays an inert record."""
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_Evil(tmp_path / "self-test")))  # the payload does work when unpickled
    assert (tmp_path / "self-test").exists()
    for name, payload in {"top": _Evil(marker), "ema": {"ema": _Evil(marker)}, "state": {"ema": [_Evil(marker)]}}.items():
        pkl = tmp_path / f"{name}.pkl"
        pkl.write_bytes(pickle.dumps(payload))
        res = invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", tmp_path / name)
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert "not a pickled network module" in res.output
    assert not marker.exists()


def test_bad_files_are_one_line_errors(tmp_path, monkeypatch):
    cases = {}
    cases["missing"] = (tmp_path / "nope.pkl", "is not a file")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    cases["junk"] = (tmp_path / "junk.pkl", "cannot read")
    net, kwargs = tiny_network()
    full = edm_pickle(tmp_path / "full.pkl", net, kwargs, monkeypatch, tmp_path / "RAN").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(full[: len(full) // 2])
    cases["truncated"] = (tmp_path / "cut.pkl", "cannot read")
    cond, ckw = tiny_network(label_dim=10)
    cases["conditional"] = (edm_pickle(tmp_path / "cond.pkl", cond, ckw, monkeypatch, tmp_path / "RAN"), "class-conditional")
    cases["no-kwargs"] = (edm_pickle(tmp_path / "nokw.pkl", net, None, monkeypatch, tmp_path / "RAN"), "init kwargs")
    wrong = dict(kwargs, augment_dim=0)  # the kwargs describe another network than the weights (no map_augment)
    cases["mismatch"] = (edm_pickle(tmp_path / "wrong.pkl", net, wrong, monkeypatch, tmp_path / "RAN"), "do not match")
    for name, (pkl, message) in cases.items():
        res = invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", tmp_path / f"out-{name}")
        assert res.exit_code == 2, (name, res.output)
        (line,) = res.output.strip().splitlines()
        assert line.startswith("error: ") and message in line, (name, line)
        assert not (tmp_path / f"out-{name}").exists()
    res = invoke("convert", "edm-pkl", tmp_path / "full.pkl", "--trust-pickle", "--key", "net", "--out", tmp_path / "k")
    assert res.exit_code == 2 and "no 'net' entry" in res.output and "augment_pipe, dataset_kwargs, ema" in res.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    res = invoke("convert", "edm-pkl", tmp_path / "full.pkl", "--trust-pickle", "--out", tmp_path / "busy")
    assert res.exit_code == 2 and "choose another --out" in res.output and (tmp_path / "busy" / "mine.txt").exists()
    assert not (tmp_path / "RAN").exists()


# -- distilling from the converted directory -------------------------------------------------------
def _digits_teacher(tmp_path: Path, monkeypatch) -> tuple[Path, torch.nn.Module]:
    net, kwargs = tiny_network(img_channels=1, model_channels=8)
    pkl = edm_pickle(tmp_path / "digits.pkl", net, kwargs, monkeypatch, tmp_path / "RAN")
    out = tmp_path / "edm-digits"
    assert invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", out, "--dataset", "digits").exit_code == 0
    return out, net


def test_train_distils_from_a_converted_directory(tmp_path, monkeypatch):
    teacher, net = _digits_teacher(tmp_path, monkeypatch)
    run = tmp_path / "run"
    res = invoke("train", "--teacher", teacher, "--backbone", "edm", "--divergence", "lsif", "--steps", 2,
                 "--batch-size", 4, "--set", "eval.samples=4", "--set", "eval.teacher_steps=2",
                 "--set", "train.checkpoint_every=1", "--set", "train.fake_updates=1", "--no-check", "-q", "--out", run)
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())
    cfg = saved["config"]
    assert cfg["teacher"] == f"edm:path={str(teacher)!r}" and cfg["backbone"] == f"edm:path={str(teacher)!r}"
    assert cfg["task"] == "digits" and cfg["schedule"] == "edm" and saved["init_from_teacher"] is True
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-0000001", "step-0000002"]
    gen = bio.load_file(run / "generator.safetensors")
    start = bio.load_file(teacher / "teacher.safetensors")
    assert sorted(gen) == sorted(f"precond.{k}" for k in start)  # the generator is the teacher's network
    assert any(not torch.equal(gen[f"precond.{k}"], v) for k, v in start.items())  # and two steps moved it

    res = invoke("eval", run, "--metrics", "fid", "-n", 6, "--json")  # the student, rebuilt from the run
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["kind"] == "student"
    res = invoke("sample", run, "-n", 4, "--out", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    res = invoke("eval", teacher, "--metrics", "fid", "-n", 6, "--json")  # EDM's sampler: Heun, 18 steps (35 NFE)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["kind"] == "teacher" and (out["steps"], out["nfe"]) == (18, 35) and out["dataset"] == "digits:split='test'"


def test_generator_fake_and_estimator_start_from_the_teacher(tmp_path, monkeypatch):
    from bregzoo.config import RunConfig
    from bregzoo.train.build import build

    teacher, net = _digits_teacher(tmp_path, monkeypatch)
    spec = f"edm:path={str(teacher)!r}"
    parts = build(RunConfig(task="digits", teacher=spec, backbone=spec, schedule="vp"))
    assert parts.from_teacher
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.05, 0.7])
    with torch.no_grad():
        want = parts.teacher.denoise(x, t)
        torch.testing.assert_close(parts.generator(x, t), want, rtol=0, atol=0)
        torch.testing.assert_close(parts.fake(x, t), want, rtol=0, atol=0)
        assert torch.count_nonzero(parts.ratio(x, t)) == 0  # the estimator's head starts at log r = 0
    trunk = parts.ratio.net.precond.model
    torch.testing.assert_close(trunk.enc["8x8_conv"].weight, net.model.enc["8x8_conv"].weight, rtol=0, atol=0)
    assert not hasattr(trunk, "dec") and all(p.requires_grad for p in parts.ratio.parameters())
    assert all(p.requires_grad for p in parts.generator.parameters())
    assert not any(p.requires_grad for p in parts.teacher.parameters())


def test_a_cifar_sized_conversion_makes_the_task_cifar10_with_data(tmp_path, monkeypatch):
    net, kwargs = tiny_network(img_resolution=32, model_channels=4, attn_resolutions=[16])
    pkl = edm_pickle(tmp_path / "c.pkl", net, kwargs, monkeypatch, tmp_path / "RAN")
    teacher = tmp_path / "edm-cifar"
    assert invoke("convert", "edm-pkl", pkl, "--trust-pickle", "--out", teacher).exit_code == 0
    res = invoke("train", "--teacher", teacher, "--data", tmp_path / "cifar", "--dry-run")
    assert res.exit_code == 0, res.output
    assert f"cifar10:root={str(tmp_path / 'cifar')!r}" in res.output and f"edm:path={str(teacher)!r}" in res.output
    res = invoke("train", "--teacher", teacher, "--task", "digits", "--no-check", "--steps", 1, "--out", tmp_path / "r")
    assert res.exit_code == 2 and "use --task cifar10" in res.output
