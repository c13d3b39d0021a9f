"""EDM's preconditionings (Karras et al. 2022, Table 1): D(x; sigma) = c_skip x + c_out F(c_in x; c_noise).

The class names, constructor arguments and the ``model`` attribute are those of NVlabs/edm, so a
preconditioned network's state dict is the official one (``model.enc.32x32_conv.weight``, ...). None of them
holds parameters of its own. ``x`` here is in EDM's units: a clean image plus noise of std ``sigma``.

- ``EDMPrecond``: c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2), c_noise = log(s)/4.
- ``VPPrecond`` (DDPM++ / score-SDE VP): c_skip = 1, c_out = -s, c_in = 1/sqrt(s^2+1), c_noise = (M-1) t(s), with
  s(t) = sqrt(exp(beta_d t^2/2 + beta_min t) - 1).
- ``VEPrecond`` (NCSN++ / score-SDE VE): c_skip = 1, c_out = s, c_in = 1, c_noise = log(s/2).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from bregzoo import BregzooError
from bregzoo_zoo.edm_unet import SongUNet

Coefficients = tuple[Tensor, Tensor, Tensor, Tensor]


class _Precond(nn.Module):
    """Shared by the three: the network ``model`` and EDM's forward pass in float32."""

    def __init__(self, model: nn.Module, img_resolution: int, img_channels: int, label_dim: int = 0,
                 use_fp16: bool = False) -> None:
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim, self.use_fp16 = img_resolution, img_channels, label_dim, use_fp16
        self.model = model

    def coefficients(self, sigma: Tensor) -> Coefficients:
        """(c_skip, c_out, c_in, c_noise) at noise levels ``sigma`` (B,)."""
        raise NotImplementedError

    def noise_label(self, sigma: Tensor) -> Tensor:
        """c_noise: what the network is told about the noise level."""
        return self.coefficients(sigma)[3]

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The denoised image D(x; sigma) for x of shape (B, C, H, W) and sigma of shape (B,) or ()."""
        x = x.to(torch.float32)
        sigma = sigma.to(device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        b = "b -> b 1 1 1"
        out = self.model(rearrange(c_in, b) * x, c_noise).to(torch.float32)
        return rearrange(c_skip, b) * x + rearrange(c_out, b) * out


class EDMPrecond(_Precond):
    def __init__(self, model: nn.Module, img_resolution: int, img_channels: int, label_dim: int = 0,
                 use_fp16: bool = False, sigma_min: float = 0, sigma_max: float = float("inf"),
                 sigma_data: float = 0.5) -> None:
        super().__init__(model, img_resolution, img_channels, label_dim, use_fp16)
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def coefficients(self, sigma: Tensor) -> Coefficients:
        sd2, s2 = self.sigma_data**2, sigma.square()
        return (sd2 / (s2 + sd2), sigma * self.sigma_data / (s2 + sd2).sqrt(), 1 / (s2 + sd2).sqrt(), sigma.log() / 4)


class VPPrecond(_Precond):
    def __init__(self, model: nn.Module, img_resolution: int, img_channels: int, label_dim: int = 0,
                 use_fp16: bool = False, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000,
                 epsilon_t: float = 1e-5) -> None:
        super().__init__(model, img_resolution, img_channels, label_dim, use_fp16)
        self.beta_d, self.beta_min, self.M, self.epsilon_t = float(beta_d), float(beta_min), int(M), float(epsilon_t)
        self.sigma_min = float(self.sigma(torch.tensor(epsilon_t, dtype=torch.float64)))
        self.sigma_max = float(self.sigma(torch.tensor(1.0, dtype=torch.float64)))

    def sigma(self, t: Tensor) -> Tensor:
        """The VP noise level at SDE time t."""
        return torch.expm1(0.5 * self.beta_d * t.square() + self.beta_min * t).sqrt()

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        """The SDE time t at which the noise level is ``sigma``."""
        return ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma.square())).sqrt() - self.beta_min) / self.beta_d

    def coefficients(self, sigma: Tensor) -> Coefficients:
        return (torch.ones_like(sigma), -sigma, 1 / (sigma.square() + 1).sqrt(), (self.M - 1) * self.sigma_inv(sigma))


class VEPrecond(_Precond):
    def __init__(self, model: nn.Module, img_resolution: int, img_channels: int, label_dim: int = 0,
                 use_fp16: bool = False, sigma_min: float = 0.02, sigma_max: float = 100) -> None:
        super().__init__(model, img_resolution, img_channels, label_dim, use_fp16)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def coefficients(self, sigma: Tensor) -> Coefficients:
        return torch.ones_like(sigma), sigma, torch.ones_like(sigma), (0.5 * sigma).log()


PRECONDS: dict[str, type[_Precond]] = {"EDMPrecond": EDMPrecond, "VPPrecond": VPPrecond, "VEPrecond": VEPrecond}
MODELS: dict[str, type[nn.Module]] = {"SongUNet": SongUNet}
_SHARED = ("img_resolution", "img_channels", "label_dim", "use_fp16")


def split_init_kwargs(precond: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An official network's init kwargs -> (the preconditioning's, the model's); ``model_type`` is dropped."""
    if precond not in PRECONDS:
        raise BregzooError(f"edm: preconditioning {precond!r} is not supported (only {', '.join(PRECONDS)}; "
                           f"iDDPMPrecond is the ADM ImageNet network, which bregzoo does not have)")
    own = [p for p in inspect.signature(PRECONDS[precond]).parameters if p != "model"]
    pre = {k: v for k, v in kwargs.items() if k in own}
    model = {k: v for k, v in kwargs.items() if k not in own and k != "model_type"}
    return pre, model


def build_precond(precond: str, precond_kwargs: dict[str, Any], model_type: str, model_kwargs: dict[str, Any],
                  scalar_output: bool = False) -> _Precond:
    """A preconditioned network from an official network's description (random weights)."""
    if model_type not in MODELS:
        raise BregzooError(f"edm: network {model_type!r} is not supported (only SongUNet: the DDPM++ and NCSN++ "
                           f"networks of the CIFAR-10, FFHQ and AFHQv2 releases)")
    if precond not in PRECONDS:
        split_init_kwargs(precond, {})  # raises the message
    missing = [k for k in ("img_resolution", "img_channels") if k not in precond_kwargs]
    if missing:
        raise BregzooError(f"edm: the network description lacks {', '.join(missing)}")
    shared = {k: precond_kwargs[k] for k in _SHARED if k in precond_kwargs}
    try:
        model = MODELS[model_type](img_resolution=shared["img_resolution"], in_channels=shared["img_channels"],
                                   out_channels=shared["img_channels"], label_dim=shared.get("label_dim", 0),
                                   scalar_output=scalar_output, **model_kwargs)
        return PRECONDS[precond](model, **precond_kwargs)
    except TypeError as exc:  # an init kwarg this version does not know
        raise BregzooError(f"edm: cannot build {precond}/{model_type} from its init kwargs: {exc}") from None


def edm_sampler_sigma_max(precond: _Precond) -> float:
    """EDM's sampler starts at sigma = 80, or lower where the preconditioning ends (generate.py)."""
    return min(80.0, precond.sigma_max)
