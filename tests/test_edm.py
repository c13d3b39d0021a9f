"""The EDM teacher: SongUNet against NVlabs/edm's parameter names, count and outputs; the preconditionings."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from bregzoo import BregzooError, create_backbone, create_teacher, io
from bregzoo.schedules import EDMSchedule, VPSchedule
from bregzoo_zoo.edm import ARCHS, EDMTeacher
from bregzoo_zoo.edm_precond import EDMPrecond, VEPrecond, VPPrecond, build_precond, split_init_kwargs
from bregzoo_zoo.edm_unet import SongUNet, param_count

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = Path(__file__).parent / "data" / "edm_reference.safetensors"
# train.py's CIFAR-10 network kwargs for --arch=ddpmpp / ncsnpp with the default --augment 0.12 (augment_dim=9).
RELEASED = {"img_resolution": 32, "img_channels": 3, "label_dim": 0, "use_fp16": False, "dropout": 0.13, "augment_dim": 9}
# From NVlabs/edm's own networks.py (commit 008a4e5), built on CPU: parameter counts, number of state-dict
# entries and the sha256 of its "key:shape" lines, for (arch, augment_dim).
OFFICIAL = {
    ("ddpmpp", 9): (55_733_891, 425, "708c24cc7c64526cbb7814aa26bfab276d61d5a32430d6ebb4390910b7ab64ea"),
    ("ddpmpp", 0): (55_732_739, 424, "6095592be70ee91ee459fedefb799d3dd9d109e49bc1964bce86d4012baa1f33"),
    ("ncsnpp", 9): (56_397_827, 432, "b5ac40f26501e7056feef4aac1d67e956ccdbc60d8b5cd97d67a085461809b8a"),
    ("ncsnpp", 0): (56_395_523, 431, "85a617d6c1b5681ba07801b8abf4890922fbdec032fc8330843470029d8c02e3"),
}


def _official_kwargs(arch: str, augment_dim: int = 9) -> dict:
    return dict(RELEASED, augment_dim=augment_dim, model_type="SongUNet", **ARCHS[arch])


def _layout_digest(state: dict) -> str:
    return hashlib.sha256("\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items()).encode()).hexdigest()


@pytest.mark.parametrize("arch, augment_dim", [
    ("ddpmpp", 9), ("ncsnpp", 9),  # the released networks; without augmentation labels: -m slow (and the formula test)
    pytest.param("ddpmpp", 0, marks=pytest.mark.slow), pytest.param("ncsnpp", 0, marks=pytest.mark.slow)])
def test_cifar10_networks_have_the_official_names_shapes_and_parameter_count(arch, augment_dim):
    pre, model = split_init_kwargs("EDMPrecond", _official_kwargs(arch, augment_dim))
    precond = build_precond("EDMPrecond", pre, "SongUNet", model)
    count, entries, digest = OFFICIAL[(arch, augment_dim)]
    state = precond.state_dict()
    assert param_count(precond) == count and len(state) == entries
    assert _layout_digest(state) == digest  # every key, in order, with its shape
    assert tuple(state["model.enc.32x32_conv.weight"].shape) == (128, 3, 3, 3)
    assert tuple(state["model.enc.16x16_block0.qkv.weight"].shape) == (768, 256, 1, 1)
    assert "model.enc.16x16_down.conv0.resample_filter" in state  # a persistent buffer, as in EDM's state dict
    assert ("model.map_noise.freqs" in state) == (arch == "ncsnpp")  # NCSN++'s random Fourier frequencies


def _block(cin: int, cout: int, emb: int, attention: bool = False, resample: bool = False) -> int:
    """Parameters of one DDPM++ UNetBlock, read off its construction: two GroupNorms, two 3x3 convs, the
    embedding's affine map, a 1x1 skip when the width changes or it resamples, and 1x1 qkv/proj attention."""
    n = 2 * cin + (9 * cin * cout + cout) + (emb * cout + cout) + 2 * cout + (9 * cout * cout + cout)
    n += (cin * cout + cout) if cin != cout or resample else 0
    return n + ((2 * cout) + (3 * cout * cout + 3 * cout) + (cout * cout + cout) if attention else 0)


def test_ddpmpp_parameter_count_by_formula():
    """55,733,891 from the layout alone: 128 channels, multipliers 2,2,2, 4 blocks a level, attention at 16x16."""
    c, emb, mults, blocks = 128, 512, [2, 2, 2], 4
    n = 9 * c + (c * emb + emb) + (emb * emb + emb)  # map_augment (9 -> 128, no bias), map_layer0, map_layer1
    n += 27 * c + c  # enc.32x32_conv
    widths, cout = [c], c
    for level, mult in enumerate(mults):
        res = 32 >> level
        if level:
            n += _block(cout, cout, emb, resample=True)
            widths.append(cout)
        for _ in range(blocks):
            n += _block(cout, c * mult, emb, attention=res == 16)
            cout = c * mult
            widths.append(cout)
    n += _block(cout, cout, emb, attention=True) + _block(cout, cout, emb)  # dec.8x8_in0, in1
    for level, mult in reversed(list(enumerate(mults))):
        res = 32 >> level
        if level < len(mults) - 1:
            n += _block(cout, cout, emb, resample=True)
        for idx in range(blocks + 1):
            n += _block(cout + widths.pop(), c * mult, emb, attention=idx == blocks and res == 16)
            cout = c * mult
    n += 2 * cout + (9 * cout * 3 + 3)  # dec.32x32_aux_norm, aux_conv
    assert n == 55_733_891
    assert param_count(create_backbone("edm", data_shape=(3, 32, 32))) == n - 9 * c  # no augmentation labels


# -- against the official code's outputs ------------------------------------------------------------
def _reference_cases():
    meta = json.loads(io.read_metadata(REFERENCE)["cases"])
    return io.load_file(REFERENCE), meta


@pytest.mark.parametrize("case", ["ddpmpp-edm", "ncsnpp-ve", "skip-vp"])
def test_official_weights_load_by_name_and_give_the_official_outputs(case):
    """tests/data/make_edm_reference.py ran NVlabs/edm's own networks at a tiny size with perturbed weights."""
    tensors, meta = _reference_cases()
    pre, model = split_init_kwargs(meta[case]["precond"], meta[case]["init_kwargs"])
    net = build_precond(meta[case]["precond"], pre, "SongUNet", model).eval()
    state = {k.split("/state/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{case}/state/")}
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        d = net(tensors[f"{case}/x"], tensors[f"{case}/sigma"])
    torch.testing.assert_close(d, tensors[f"{case}/D"], rtol=1e-5, atol=1e-5)


# -- tiny forward passes and the preconditionings ----------------------------------------------------
TINY = "edm:model_channels=16,channel_mult=1x2,num_blocks=1,attn_resolutions=4"


@pytest.mark.parametrize("arch", ["ddpmpp", "ncsnpp"])
def test_tiny_backbone_shapes_and_scalar_head(arch):
    net = create_backbone(f"{TINY},arch={arch}", data_shape=(3, 8, 8))
    x, c = torch.randn(5, 3, 8, 8), torch.linspace(-1.5, 1.0, 5)
    assert net(x, c).shape == (5, 3, 8, 8)
    head = create_backbone(f"{TINY},arch={arch}", data_shape=(3, 8, 8), scalar_output=True)
    out = head(x, c)
    assert out.shape == (5,) and torch.count_nonzero(out) == 0  # zero head: log r starts at 0
    assert not hasattr(head.precond.model, "dec")


def test_skip_encoder_and_decoder_shapes():
    model = SongUNet(8, 1, 1, model_channels=8, channel_mult=[1, 2, 2], num_blocks=1, attn_resolutions=[4],
                     encoder_type="skip", decoder_type="skip", resample_filter=[1, 3, 3, 1])
    assert "2x2_aux_up" not in model.dec and "8x8_aux_up" in model.dec and "4x4_aux_skip" in model.enc
    assert model(torch.randn(2, 1, 8, 8), torch.randn(2)).shape == (2, 1, 8, 8)


class _Probe(torch.nn.Module):
    """A stand-in network: records what it is fed and returns a fixed F."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out, self.seen = out, None

    def forward(self, x, noise_labels):
        self.seen = (x, noise_labels)
        return self.out


@pytest.mark.parametrize("kind", ["edm", "vp", "ve"])
def test_preconditioning_follows_edm_table_1(kind):
    torch.manual_seed(0)
    s = torch.tensor([0.002, 0.3, 1.7, 80.0])
    x, f = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    sd = 0.5
    if kind == "edm":
        net = EDMPrecond(_Probe(f), 4, 3)
        c_skip, c_out, c_in, c_noise = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt(), 1 / (s**2 + sd**2).sqrt(), s.log() / 4
    elif kind == "vp":
        net = VPPrecond(_Probe(f), 4, 3)
        t = ((0.1**2 + 2 * 19.9 * torch.log(1 + s.double() ** 2)).sqrt() - 0.1) / 19.9  # the VP SDE's time at s
        c_skip, c_out, c_in, c_noise = torch.ones(4), -s, 1 / (s**2 + 1).sqrt(), (999 * t).float()
        torch.testing.assert_close(net.sigma(t), s.double())  # sigma_inv inverts sigma
        assert net.sigma_min == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9e-10 + 1e-6)))
        assert net.sigma_max == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9 + 0.1)))  # about 152
    else:
        net = VEPrecond(_Probe(f), 4, 3)
        c_skip, c_out, c_in, c_noise = torch.ones(4), s, torch.ones(4), (s / 2).log()
        assert (net.sigma_min, net.sigma_max) == (0.02, 100.0)
    d = net(x, s)
    fed_x, fed_noise = net.model.seen
    bc = lambda v: v.reshape(-1, 1, 1, 1)  # noqa: E731
    torch.testing.assert_close(fed_x, bc(c_in) * x)
    torch.testing.assert_close(fed_noise, c_noise)
    torch.testing.assert_close(d, bc(c_skip) * x + bc(c_out) * f)


def test_a_fresh_backbone_in_the_core_denoiser_is_edm_preconditioning():
    """The core Denoiser feeds c_in y and log(s)/4, EDMPrecond's own: the two agree on the same SongUNet."""
    from bregzoo.networks import Denoiser

    backbone = create_backbone(TINY, data_shape=(3, 8, 8)).eval()
    den = Denoiser(backbone, EDMSchedule(), sigma_data=0.5).eval()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0.01, 1.0, 40.0])
    with torch.no_grad():
        torch.testing.assert_close(den(x, t), backbone.precond(x, t), rtol=1e-5, atol=1e-5)


def test_teacher_works_under_any_schedule():
    """D(x_t, t) is EDM's D(x_t/alpha; sigma/alpha): the same denoising under VP as under EDM at the same level."""
    precond = create_backbone(TINY, data_shape=(3, 8, 8)).precond
    vp, edm = EDMTeacher(precond, VPSchedule()), EDMTeacher(precond, EDMSchedule())
    t = torch.tensor([0.05, 0.5, 0.9], dtype=torch.float64)
    s, alpha = VPSchedule().s(t), VPSchedule().alpha(t)
    y = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        a = vp.denoise(y * alpha.float().reshape(-1, 1, 1, 1), t.float())
        b = edm.denoise(y, s.float())
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert vp.sigma_max == edm.sigma_max == 80.0 and vp.data_shape == (3, 8, 8)


def test_backbone_and_teacher_errors(tmp_path):
    with pytest.raises(BregzooError, match="square images"):
        create_backbone("edm", data_shape=(2,))
    with pytest.raises(BregzooError, match="divisible by 4"):
        create_backbone("edm:channel_mult=1x2x2", data_shape=(3, 6, 6))
    with pytest.raises(BregzooError, match="arch must be one of"):
        create_backbone("edm:arch=adm", data_shape=(3, 8, 8))
    with pytest.raises(BregzooError, match="come from the converted directory"):
        create_backbone("edm:model_channels=16", data_shape=(3, 8, 8), path=str(tmp_path))
    with pytest.raises(BregzooError, match="convert edm-pkl"):
        create_teacher("edm", dataset=None, schedule=EDMSchedule())
    with pytest.raises(BregzooError, match="not a directory written by 'bregzoo convert edm-pkl'"):
        create_teacher("edm", dataset=None, schedule=EDMSchedule(), path=str(tmp_path))
    with pytest.raises(BregzooError, match="DhariwalUNet"):
        build_precond("EDMPrecond", {"img_resolution": 8, "img_channels": 3}, "DhariwalUNet", {})
    with pytest.raises(BregzooError, match="iDDPMPrecond"):
        split_init_kwargs("iDDPMPrecond", {})
