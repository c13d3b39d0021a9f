"""FID, KID and precision/recall through ``torch_fidelity.calculate_metrics``, offline.

Feature extractors live in torch-fidelity's registry: ``digits-cnn`` (registered here: the classifier shipped in
``assets/digits_cnn.safetensors``, 128-d penultimate features) and torch-fidelity's own ``inception-v3-compat``,
used only when its weights file is on this machine (``inception_weights=`` option, ``$BREGZOO_INCEPTION_WEIGHTS``,
or torch hub's cache). ``feature_extractor="auto"`` picks digits-cnn for 1x8x8 data and Inception otherwise.
torch-fidelity would unpickle the Inception file without restriction; bregzoo loads it once, weights-only, and
hands torch-fidelity the tensors (``bregzoo-inception-v3``, the same network and features).

A metric is ``metric(samples, dataset) -> dict``: samples (N, C, H, W) in [-1, 1] against the dataset's real
images (all of them when it is indexable, else ``reference`` fresh samples), both fed as uint8.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from bregzoo import BregzooError

DIGITS_EXTRACTOR = "digits-cnn"
INCEPTION = "inception-v3-compat"
SAFE_INCEPTION = "bregzoo-inception-v3"  # INCEPTION on weights that bregzoo loaded weights-only
INCEPTION_ENV = "BREGZOO_INCEPTION_WEIGHTS"
_OUT_KEYS = {  # torch-fidelity's result keys -> ours
    "frechet_inception_distance": "fid",
    "kernel_inception_distance_mean": "kid",
    "kernel_inception_distance_std": "kid_std",
    "precision": "precision",
    "recall": "recall",
    "f_score": "f_score",
}


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float images -> uint8 0..255 (rounded, clipped)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class Uint8Images(Dataset):
    """What torch-fidelity reads: a Dataset of uint8 (C, H, W) tensors; grey images repeated to RGB on request."""

    def __init__(self, images: Tensor, rgb: bool = False) -> None:
        self.images = to_uint8(images)
        if rgb and self.images.shape[1] == 1:
            self.images = self.images.expand(-1, 3, -1, -1).contiguous()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


@functools.lru_cache(maxsize=1)
def _digits_extractor_class() -> type:
    from torch_fidelity import FeatureExtractorBase
    from torch_fidelity.helpers import vassert

    from bregzoo_zoo.digits_cnn import load_digits_cnn

    class FeatureExtractorDigitsCNN(FeatureExtractorBase):
        """uint8 (B, 1, 8, 8) digits -> 128-d penultimate features and 10 logits of the shipped classifier."""

        def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
            super().__init__(name, features_list)
            self.net, self.meta = load_digits_cnn()

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("penultimate", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return "logits" if metric == "isc" else "penultimate"

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> Tensor:
            return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

        def forward(self, x: Tensor) -> tuple[Tensor, ...]:
            vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
            vassert(x.dim() == 4 and tuple(x.shape[1:]) == (1, 8, 8), f"Input is not Bx1x8x8: {tuple(x.shape)}")
            feats = self.net.embed(x.float() / 127.5 - 1)
            out = {"penultimate": feats, "logits": self.net.out(feats)}
            return tuple(out[f] for f in self.features_list)

    return FeatureExtractorDigitsCNN


def register_digits_extractor() -> str:
    """Register ``digits-cnn`` in torch-fidelity's feature-extractor registry (idempotent); return its name."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if DIGITS_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(DIGITS_EXTRACTOR, _digits_extractor_class())
    return DIGITS_EXTRACTOR


def inception_weights(path: str | None = None) -> str:
    """The path of the local torch-fidelity InceptionV3 weights file (read by ``inception_state``); else a BregzooError."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    filename = URL_INCEPTION_V3.rsplit("/", 1)[-1]
    hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
    chosen = path or os.environ.get(INCEPTION_ENV)
    if chosen and not Path(os.path.expanduser(chosen)).is_file():
        raise BregzooError(f"InceptionV3 weights file '{chosen}' does not exist (from {'the option' if path else '$' + INCEPTION_ENV})")
    if not chosen:
        if not hub.is_file():
            raise BregzooError(
                f"InceptionV3 weights for FID are not on this machine: download {URL_INCEPTION_V3} elsewhere and put it at "
                f"'{hub}', or set ${INCEPTION_ENV}=FILE (or pass inception_weights=FILE); nothing is downloaded at run time"
            )
        chosen = str(hub)
    return str(Path(os.path.expanduser(chosen)))


def inception_state(path: str) -> dict[str, Tensor]:
    """The InceptionV3 weights at ``path``, loaded weights-only (tensors and nothing else), once per file version."""
    st = os.stat(path)
    return _inception_state(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1)  # fid, kid and prc of one evaluation share the ~95 MB of weights
def _inception_state(path: str, mtime_ns: int, size: int) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BregzooError(f"'{path}' is not a plain InceptionV3 weights file ({type(exc).__name__}); refusing to "
                           "unpickle it") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BregzooError(f"'{path}' is not an InceptionV3 state dict (names to tensors); use torch-fidelity's "
                           "weights-inception-2015-12-05-6726825d.pth")
    return state


@functools.lru_cache(maxsize=1)
def _safe_inception_class() -> type:
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as fe

    class FeatureExtractorInceptionV3Safe(fe.FeatureExtractorInceptionV3):
        """torch-fidelity's InceptionV3 on a state dict that bregzoo loaded weights-only."""

        def __init__(self, name: str, features_list: list[str], bregzoo_inception_state: dict[str, Tensor] | None = None,
                     **kwargs: Any) -> None:
            if bregzoo_inception_state is None:
                raise BregzooError(f"the {SAFE_INCEPTION} feature extractor is built by bregzoo's fid, kid and prc")
            kwargs.pop("feature_extractor_weights_path", None)
            # Its __init__ builds the layers, then loads a file given by path with weights_only=False, or else
            # the download through load_state_dict_from_url (looked up in its module when called): that one
            # is answered with the tensors already loaded, so nothing is read or unpickled a second time.
            with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: bregzoo_inception_state):
                super().__init__(name, features_list, feature_extractor_weights_path=None, **kwargs)

    return FeatureExtractorInceptionV3Safe


def register_safe_inception() -> str:
    """Register ``bregzoo-inception-v3`` in torch-fidelity's feature-extractor registry (idempotent); return its name."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if SAFE_INCEPTION not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(SAFE_INCEPTION, _safe_inception_class())
    return SAFE_INCEPTION


def reference_images(dataset: Any, n: int | None, seed: int = 0) -> Tensor:
    """Real images from ``dataset``: all (or a seeded random ``n``) when it is indexable, else ``n`` samples."""
    gen = torch.Generator().manual_seed(seed)
    if isinstance(dataset, Dataset) and hasattr(dataset, "__len__"):
        idx = torch.arange(len(dataset)) if n is None or n >= len(dataset) else torch.randperm(len(dataset), generator=gen)[:n]
        return torch.stack([dataset[int(i)][0] for i in idx])
    return dataset.sample(n or 10_000, generator=gen)


def compute_fidelity(
    samples: Tensor,
    dataset: Any,
    metrics: tuple[str, ...] = ("fid", "kid", "prc"),
    feature_extractor: str = "auto",
    reference: int | None = None,
    inception_weights_path: str | None = None,
    kid_subset_size: int = 1000,
    prc_neighborhood: int = 3,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Any of FID, KID and precision/recall in one feature pass: samples vs the dataset's real images."""
    import torch_fidelity

    shape = tuple(getattr(dataset, "data_shape", samples.shape[1:]))
    if samples.ndim != 4 or tuple(samples.shape[1:]) != shape:
        raise BregzooError(f"fidelity metrics: samples have shape {tuple(samples.shape)}, expected (N, {', '.join(map(str, shape))})")
    if len(samples) < 2:
        raise BregzooError("fidelity metrics need at least 2 samples")
    unknown = set(metrics) - {"fid", "kid", "prc"}
    if unknown:
        raise BregzooError(f"unknown fidelity metric(s) {sorted(unknown)}; choose from fid, kid, prc")
    name = feature_extractor
    if name == "auto":
        name = DIGITS_EXTRACTOR if shape == (1, 8, 8) else INCEPTION
    options: dict[str, Any] = {}
    if name == DIGITS_EXTRACTOR:
        if shape != (1, 8, 8):
            raise BregzooError(f"the digits-cnn feature extractor takes 1x8x8 digits, not {shape}; use inception-v3-compat")
        register_digits_extractor()
    elif name == INCEPTION:
        options["bregzoo_inception_state"] = inception_state(inception_weights(inception_weights_path))
        name = register_safe_inception()
    else:
        raise BregzooError(f"feature_extractor must be 'auto', {DIGITS_EXTRACTOR!r} or {INCEPTION!r}, got {name!r}")
    real = reference_images(dataset, reference, seed)
    subset = min(kid_subset_size, len(samples), len(real))
    result = torch_fidelity.calculate_metrics(
        input1=Uint8Images(samples, rgb=name == SAFE_INCEPTION),
        input2=Uint8Images(real, rgb=name == SAFE_INCEPTION),
        fid="fid" in metrics, kid="kid" in metrics, prc="prc" in metrics,
        feature_extractor=name, kid_subset_size=subset, prc_neighborhood=prc_neighborhood,
        batch_size=batch_size, rng_seed=seed, cuda=torch.cuda.is_available(),
        cache=False, save_cpu_ram=True, verbose=False, datasets_download=False, **options,
    )
    return {_OUT_KEYS[k]: float(v) for k, v in result.items() if k in _OUT_KEYS}


class FidelityMetric:
    """A registered metric: ``metric(samples, dataset) -> {'fid': ...}`` (or kid/kid_std, precision/recall/f_score)."""

    def __init__(self, which: str, **options: Any) -> None:
        self.which, self.options = which, options

    @property
    def better(self) -> dict[str, str]:
        """How to read each output (CLI tables)."""
        return {"fid": {"fid": "lower"}, "kid": {"kid": "lower"},
                "prc": {"precision": "higher", "recall": "higher", "f_score": "higher"}}[self.which]

    def __call__(self, samples: Tensor, dataset: Any) -> dict[str, float]:
        return compute_fidelity(samples, dataset, metrics=(self.which,), **self.options)

    def __repr__(self) -> str:
        return f"FidelityMetric({self.which!r}, {self.options})"


def _existing(inception_weights: str | None) -> str | None:
    """Check a given weights path when the metric is built, not after a whole training run."""
    if inception_weights is not None and not Path(os.path.expanduser(inception_weights)).is_file():
        raise BregzooError(f"InceptionV3 weights file '{inception_weights}' does not exist; put the file there "
                           "(see docs/images.md) or leave out inception_weights=")
    return inception_weights


def fid(feature_extractor: str = "auto", reference: int | None = None, inception_weights: str | None = None, batch_size: int = 64, seed: int = 0) -> FidelityMetric:
    """Frechet distance between feature Gaussians of samples and real images (lower is better)."""
    return FidelityMetric("fid", feature_extractor=feature_extractor, reference=reference, inception_weights_path=_existing(inception_weights), batch_size=batch_size, seed=seed)


def kid(feature_extractor: str = "auto", reference: int | None = None, inception_weights: str | None = None, kid_subset_size: int = 1000, batch_size: int = 64, seed: int = 0) -> FidelityMetric:
    """Kernel (polynomial MMD^2) distance in feature space, mean and std over subsets (lower is better)."""
    return FidelityMetric("kid", feature_extractor=feature_extractor, reference=reference, inception_weights_path=_existing(inception_weights), kid_subset_size=kid_subset_size, batch_size=batch_size, seed=seed)


def prc(feature_extractor: str = "auto", reference: int | None = None, inception_weights: str | None = None, neighborhood: int = 3, batch_size: int = 64, seed: int = 0) -> FidelityMetric:
    """Improved precision and recall (k-NN manifolds in feature space, Kynkaanniemi et al. 2019)."""
    return FidelityMetric("prc", feature_extractor=feature_extractor, reference=reference, inception_weights_path=_existing(inception_weights), prc_neighborhood=neighborhood, batch_size=batch_size, seed=seed)
