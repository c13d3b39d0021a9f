"""Any timm model as a time-conditioned trunk for a ratio estimator or discriminator (``timm:model=resnet18``).

Time conditioning: c_noise fills one extra input channel. ``pretrained=True`` only ever reads a local file (an
explicit ``checkpoint=``, the Hugging Face cache, or torch hub's cache); the hub is put offline first, so
nothing stalls on a network that is not there.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from bregzoo import BregzooError


class TimmTrunk(nn.Module):
    """forward(x (B, C, H, W), c_noise (B,)) -> (B,): the timm model sees [x, c_noise broadcast to H x W]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        t = repeat(c_noise.to(x.dtype).reshape(-1), "b -> b 1 h w", h=x.shape[-2], w=x.shape[-1])
        return rearrange(self.model(torch.cat([x, t], dim=1)), "b 1 -> b")


def local_pretrained_file(model: str, checkpoint: str | None = None) -> str:
    """A local weights file for ``model``; never downloads. Raises BregzooError saying where to put one."""
    if checkpoint is not None:
        if not Path(os.path.expanduser(checkpoint)).is_file():
            raise BregzooError(f"timm: checkpoint file '{checkpoint}' does not exist")
        return str(Path(os.path.expanduser(checkpoint)))
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    if cfg is None:
        raise BregzooError(f"timm: model {model!r} has no pretrained weights in timm; use pretrained=false")
    looked = []
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(found, str):
                return found
        looked.append(f"the Hugging Face cache for {cfg.hf_hub_id}")
    if cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url.split("?")[0])
        if cached.is_file():
            return str(cached)
        looked.append(str(cached))
    where = " and ".join(looked) or "nowhere (no source known)"
    raise BregzooError(
        f"timm: pretrained weights for {model!r} are not on this machine (looked in {where}); nothing is downloaded "
        f"at run time: fetch them elsewhere (e.g. 'hf download {cfg.hf_hub_id}') and pass "
        f"timm:model={model},pretrained=true,checkpoint=FILE, or use pretrained=false"
    )


def timm_trunk(
    data_shape: tuple[int, ...],
    scalar_output: bool = False,
    model: str = "resnet18",
    pretrained: bool = False,
    checkpoint: str | None = None,
) -> TimmTrunk:
    """A timm model with one extra input channel for c_noise and one output: a conv ratio estimator/discriminator."""
    if not scalar_output:
        raise BregzooError("the timm backbone is a ratio-estimator/discriminator trunk (scalar output only); use unet for denoisers")
    if len(data_shape) != 3:
        raise BregzooError(f"the timm backbone needs image data (C, H, W), got shape {tuple(data_shape)}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # before timm/huggingface_hub read it: no hub calls at run time
    import timm

    if not timm.is_model(model):
        close = difflib.get_close_matches(model.split(".")[0], timm.list_models(), n=5, cutoff=0.6)
        raise BregzooError(f"timm has no model {model!r}; similar: {', '.join(close) or 'none'} (timm.list_models('*name*') lists them)")
    kwargs: dict[str, Any] = {"in_chans": data_shape[0] + 1, "num_classes": 1}
    pretrained = bool(pretrained) or checkpoint is not None  # a checkpoint file means: load it
    if pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": local_pretrained_file(model, checkpoint)}
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = tuple(data_shape[1:])
    try:
        net = timm.create_model(model, pretrained=pretrained, **kwargs)
    except BregzooError:
        raise
    except Exception as exc:  # e.g. an input too small for the model's strides, or a mismatched checkpoint
        raise BregzooError(f"timm could not build {model!r} for {tuple(data_shape)} images: {type(exc).__name__}: {exc}") from None
    return TimmTrunk(net)
