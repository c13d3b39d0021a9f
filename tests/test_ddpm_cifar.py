"""The DDPM UNet against diffusers' own UNet2DModel: key mapping, outputs to 1e-5, the teacher's eps -> x0 map."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bregzoo import BregzooError, create_backbone, create_teacher
from bregzoo.schedules import EDMSchedule, VPSchedule
from bregzoo_zoo.ddpm_cifar import DiscreteVP, param_count
from bregzoo_zoo.ddpm_unet import DDPM_CIFAR10_CONFIG, DDPMUNet

diffusers = pytest.importorskip("diffusers")

TINY = {"block_out_channels": [32, 32, 32, 32], "norm_num_groups": 8, "layers_per_block": 1}
CIFAR = SimpleNamespace(data_shape=(3, 32, 32))


pytestmark = pytest.mark.usefixtures("one_thread")


def _diffusers_dir(tmp_path: Path, overrides: dict, head_dim: object = "absent", seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """Build diffusers' UNet2DModel with the DDPM CIFAR-10 layout and random weights; save it as a checkpoint folder."""
    cfg = {k: v for k, v in DDPM_CIFAR10_CONFIG.items() if k not in ("attention_head_dim", "dropout")}
    cfg.update(overrides)
    if head_dim != "absent":
        cfg["attention_head_dim"] = head_dim
    torch.manual_seed(seed)
    ref = diffusers.UNet2DModel(**cfg).eval()
    with torch.no_grad():  # perturb every weight (biases start at 0) so a mis-mapped key cannot hide
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    out = tmp_path / "ddpm"
    ref.save_pretrained(out, safe_serialization=True)
    return out, ref


def test_full_config_has_the_published_parameter_count():
    with torch.device("meta"):
        assert param_count(DDPMUNet(DDPM_CIFAR10_CONFIG)) == 35_746_307


@pytest.mark.parametrize("head_dim", ["absent", None])  # diffusers' default of 8 per head, and one head (Ho et al.)
def test_tiny_same_layout_loads_and_matches_diffusers(tmp_path, head_dim):
    folder, ref = _diffusers_dir(tmp_path, TINY, head_dim)
    net = create_backbone("ddpm-cifar", data_shape=(3, 32, 32), path=str(folder), time_input="timestep")
    assert param_count(net) == param_count(ref)
    x, t = torch.randn(3, 3, 32, 32), torch.tensor([0.0, 321.5, 999.0])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t), ref(x, t).sample, rtol=0, atol=1e-5)


def test_old_checkpoint_attention_names_are_renamed(tmp_path):
    from safetensors.torch import load_file, save_file

    folder, ref = _diffusers_dir(tmp_path, TINY)
    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    old = {}
    for k, v in sd.items():
        for new, dep in renames.items():
            k = k.replace(new, dep)
        old[k] = v
    assert any(".proj_attn." in k for k in old)
    save_file(old, str(folder / "diffusion_pytorch_model.safetensors"))
    net = create_backbone("ddpm-cifar", data_shape=(3, 32, 32), path=str(folder), time_input="timestep")
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5.0, 700.0])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t), ref(x, t).sample, rtol=0, atol=1e-5)


def test_noise_table_matches_diffusers_scheduler():
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    abar = sched.alphas_cumprod.double()
    table = DiscreteVP()
    n = torch.arange(1000)
    # diffusers keeps alphas_cumprod in float32: 1 - abar_0 = 1e-4 carries ~1e-4 relative rounding.
    torch.testing.assert_close(table.s(n), ((1 - abar) / abar).sqrt(), rtol=2e-4, atol=0)
    assert torch.equal(table.timestep(table.s(n), "nearest"), n.double())
    torch.testing.assert_close(table.timestep(table.s(n)), n.double(), rtol=0, atol=1e-6)
    mid = (table.s(torch.tensor([10])).log() + table.s(torch.tensor([11])).log()) / 2
    torch.testing.assert_close(table.timestep(mid.exp()), torch.tensor([10.5], dtype=torch.float64))
    assert table.timestep(torch.tensor([1e-6, 1e6])).tolist() == [0.0, 999.0]  # clamped to the end steps


@pytest.mark.parametrize("schedule", [VPSchedule(), EDMSchedule()], ids=["vp", "edm"])
def test_teacher_converts_eps_to_x0_like_ddpm(tmp_path, schedule):
    folder, ref = _diffusers_dir(tmp_path, TINY)
    teacher = create_teacher("ddpm", dataset=CIFAR, schedule=schedule, path=str(folder))
    nearest = create_teacher("ddpm", dataset=CIFAR, schedule=schedule, path=str(folder), time_mapping="nearest")
    table = DiscreteVP()
    steps = torch.tensor([3, 250, 600])
    s = table.s(steps)
    t = schedule.t_of_s(s).float()
    a = schedule.alpha(t.double())
    x = torch.randn(3, 3, 32, 32)
    y = x.double() / a[:, None, None, None]
    x_vp = (y / (1 + s.square()).sqrt()[:, None, None, None]).float()  # DDPM's x_n at the same noise level
    with torch.no_grad():
        eps = ref(x_vp, steps).sample.double()
        want = (y - s[:, None, None, None] * eps).float()
        torch.testing.assert_close(teacher.denoise(x, t), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(nearest.denoise(x, t), want, rtol=1e-4, atol=1e-4)
        # Between two steps the modes differ: interpolation feeds 250.5, nearest feeds 251.
        s_mid = ((table.s(torch.tensor([250])).log() + table.s(torch.tensor([251])).log()) / 2 + 1e-4).exp()
        t_mid = schedule.t_of_s(s_mid).float().expand(3)
        assert not torch.allclose(teacher.denoise(x, t_mid), nearest.denoise(x, t_mid))
    samples = teacher.sample(2, steps=3, generator=torch.Generator().manual_seed(0))  # the Heun ODE sampler runs on it
    assert samples.shape == (2, 3, 32, 32) and torch.isfinite(samples).all()


def test_teacher_and_backbone_errors(tmp_path):
    with pytest.raises(BregzooError, match="does not exist.*google/ddpm-cifar10-32"):
        create_teacher("ddpm", dataset=CIFAR, schedule=VPSchedule(), path=str(tmp_path / "nope"))
    with pytest.raises(BregzooError, match="ddpm:path=DIR"):
        create_teacher("ddpm", dataset=CIFAR, schedule=VPSchedule())
    folder, _ = _diffusers_dir(tmp_path, TINY)
    with pytest.raises(BregzooError, match=r"\(1, 8, 8\)"):
        create_teacher("ddpm", dataset=SimpleNamespace(data_shape=(1, 8, 8)), schedule=VPSchedule(), path=str(folder))
    with pytest.raises(BregzooError, match="channels"):
        create_backbone("ddpm-cifar", data_shape=(1, 32, 32), path=str(folder))
    with pytest.raises(BregzooError, match="come from the checkpoint"):
        create_backbone("ddpm-cifar", data_shape=(3, 32, 32), path=str(folder), channels="32x32x32x32")
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BregzooError, match="cannot read the weights"):
        create_teacher("ddpm", dataset=CIFAR, schedule=VPSchedule(), path=str(folder))
    weights.unlink()
    with pytest.raises(BregzooError, match="no diffusion_pytorch_model.safetensors"):
        create_teacher("ddpm", dataset=CIFAR, schedule=VPSchedule(), path=str(folder))


def test_backbone_from_scratch_and_scalar_head_from_checkpoint(tmp_path):
    net = create_backbone("ddpm-cifar:channels=32x32x32x32,layers=1,groups=8", data_shape=(3, 16, 16))
    x, c = torch.randn(2, 3, 16, 16), torch.tensor([-1.0, 0.5])  # c_noise = log(s)/4
    assert net(x, c).shape == (2, 3, 16, 16)
    folder, ref = _diffusers_dir(tmp_path, TINY)
    head = create_backbone("ddpm-cifar", data_shape=(3, 32, 32), path=str(folder), scalar_output=True)
    assert not hasattr(head.unet, "up_blocks")
    torch.testing.assert_close(head.unet.conv_in.weight, ref.conv_in.weight)
    torch.testing.assert_close(head.unet.mid_block.attentions[0].to_q.weight, ref.mid_block.attentions[0].to_q.weight)
    out = head(torch.randn(2, 3, 32, 32), torch.zeros(2))
    assert out.shape == (2,) and torch.count_nonzero(out) == 0  # zero head: log r starts at 0


@pytest.mark.slow
def test_full_ddpm_cifar10_roundtrip_through_diffusers(tmp_path):
    folder, ref = _diffusers_dir(tmp_path, {}, head_dim=None)
    assert param_count(ref) == 35_746_307
    net = create_backbone("ddpm-cifar", data_shape=(3, 32, 32), path=str(folder), time_input="timestep")
    assert param_count(net) == 35_746_307
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([17.0, 901.0])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t), ref(x, t).sample, rtol=0, atol=1e-5)
