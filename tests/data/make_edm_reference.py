"""Write tests/data/edm_reference.safetensors from NVlabs/edm's own code (run once; the file is committed).

    python tests/data/make_edm_reference.py --edm PATH/TO/NVlabs/edm

PATH is a checkout of https://github.com/NVlabs/edm (its ``training``, ``torch_utils`` and ``dnnlib``
packages are imported from there, nothing is copied). For each case below it builds the official
preconditioned network at a tiny size, perturbs every parameter (so that a wrongly mapped key shows), and
stores the state dict, an input batch, noise levels and the official output D(x; sigma).
tests/test_edm.py loads the same weights into bregzoo's classes and compares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

TINY = dict(model_channels=4, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.13)
CASES = {
    "ddpmpp-edm": ("EDMPrecond", dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard",
                                      decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1], augment_dim=9)),
    "ncsnpp-ve": ("VEPrecond", dict(model_type="SongUNet", embedding_type="fourier", encoder_type="residual",
                                    decoder_type="standard", channel_mult_noise=2, resample_filter=[1, 3, 3, 1])),
    "skip-vp": ("VPPrecond", dict(model_type="SongUNet", embedding_type="positional", encoder_type="skip",
                                  decoder_type="skip", channel_mult_noise=1, resample_filter=[1, 3, 3, 1])),
}
SIGMAS = [0.003, 0.4, 2.5, 60.0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edm", required=True, help="a checkout of NVlabs/edm")
    parser.add_argument("--out", default=str(Path(__file__).with_name("edm_reference.safetensors")))
    args = parser.parse_args()
    sys.path.insert(0, args.edm)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from training import networks  # the official code

    from bregzoo import io

    tensors, meta = {}, {}
    for i, (case, (precond, kwargs)) in enumerate(CASES.items()):
        torch.manual_seed(i)
        init = dict(img_resolution=8, img_channels=3, label_dim=0, use_fp16=False, **TINY, **kwargs)
        net = getattr(networks, precond)(**init).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
            x = torch.randn(len(SIGMAS), 3, 8, 8) * torch.tensor(SIGMAS).clamp(min=0.5).reshape(-1, 1, 1, 1)
            sigma = torch.tensor(SIGMAS)
            d = net(x, sigma)
        tensors.update({f"{case}/state/{k}": v for k, v in net.state_dict().items()})
        tensors.update({f"{case}/x": x, f"{case}/sigma": sigma, f"{case}/D": d})
        meta[case] = {"precond": precond, "init_kwargs": init}
    io.save_file(tensors, args.out, metadata={"cases": json.dumps(meta), "made_by": "tests/data/make_edm_reference.py"})
    print(f"{args.out}: {len(tensors)} tensors, {sum(v.numel() for v in tensors.values()):,} numbers")


if __name__ == "__main__":
    main()
