"""One training step, run under torchrun/accelerate with N processes or plainly with one.

Writes the generator, fake-denoiser and estimator parameters after the step to ``OUT/params.safetensors``
(main process). Every process draws the same global noise and takes its slice, so N processes with
batch B must match one process with batch N*B.
"""

import sys

import torch
from accelerate import Accelerator

from bregzoo import io
from bregzoo.config import RunConfig
from bregzoo.train.build import build
from bregzoo.train.loop import Distiller, draw_step_noise


def main(out: str, batch: int, extra: str) -> None:
    torch.set_num_threads(1)
    cfg = RunConfig().replace(**{
        "backbone": "mlp:width=16,depth=1", "schedule": "edm:t_min=0.02,t_max=10.0", "train.batch_size": batch,
        "train.fake_updates": 2, "weighting.normalize": "batch", "divergence": "lsif", "weighting.gan": 0.1,
        "optim.grad_clip": 0.5, **({"weighting.normalize": "ema-bins", "train.grad_accum": 2} if extra == "accum" else {}),
        **({"train.ratio_net": "shared"} if extra == "shared" else {}),
    })
    acc = Accelerator(cpu=True)
    parts = build(cfg)
    d = Distiller(cfg, parts, acc)
    for _ in range(2):
        d.train_step(draw_step_noise(d.rng, parts, cfg, acc.num_processes, acc.process_index))
    if acc.is_main_process:
        state = {f"gen.{k}": v for k, v in parts.generator.state_dict().items()}
        state.update({f"fake.{k}": v for k, v in parts.fake.state_dict().items()})
        state.update({f"ratio.{k}": v for k, v in parts.ratio.state_dict().items()})
        state.update({f"ema.{k}": v for k, v in d.ema.state_dict().items()})
        io.save_file(state, f"{out}/params.safetensors", metadata={"processes": str(acc.num_processes)})
    acc.end_training()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
