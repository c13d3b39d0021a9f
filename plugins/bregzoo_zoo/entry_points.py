"""The built-in zoo's plugins, one per ``bregzoo`` entry point, registered without importing torch.

Each class below is one plugin (pluggy registers any object with hook implementations). Its factories
are named ``'module:attr'`` and imported on first use, so ``bregzoo --help``, ``bregzoo plugins`` and
``bregzoo divergences`` list the whole zoo in a fraction of a second; the modules that build networks,
teachers and metrics are imported when a component is created. The divergences are listed as classes:
their module imports torch lazily (``lazy_loader``), since the table reads only their formulas.

A third-party package can register the same way; see ``plugins/examples/bregzoo-alpha``.
"""

from __future__ import annotations

from typing import Any

from bregzoo.hookspecs import hookimpl
from bregzoo.registry import Spec

# pyproject.toml names each class: `mlp = "bregzoo_zoo.entry_points:mlp"`. Lowercase, like the modules
# that each one stood for, so the plugin names (`bregzoo.mlp`, ...) are unchanged.
# ruff: noqa: N801


class divergences:
    @staticmethod
    @hookimpl
    def register_divergences() -> list[Any]:
        """The built-in divergences."""
        from bregzoo_zoo.divergences import BUILTIN

        return list(BUILTIN)


class estimators:
    @staticmethod
    @hookimpl
    def register_ratio_estimators() -> list[Spec]:
        """The built-in ratio estimators: BR_h matching with a named or any registered h."""
        where = "bregzoo_zoo.estimators:"
        return [
            Spec("classifier", where + "classifier", "Logistic regression: E_p[softplus(l)] + E_q[softplus(-l)] (h = bkl)."),
            Spec("lsif", where + "lsif", "uLSIF: E_p[r^2]/2 - E_q[r] (+1/2 from the affine part of h = lsif)."),
            Spec("kliep", where + "kliep", "Unnormalised KLIEP: E_p[r] - E_q[l] (h = ukl)."),
            Spec("bregman", where + "bregman", "BR_h matching with any registered divergence as h, e.g. 'bregman:h=hellinger'."),
        ]


class mixtures:
    @staticmethod
    @hookimpl
    def register_datasets() -> list[Spec]:
        """The Gaussian-mixture tasks: 2-D ones, and one in any dimension."""
        where = "bregzoo_zoo.mixtures:"
        return [
            Spec("gmm8", where + "gmm8", "Eight equal Gaussians on a ring of radius 2, std 0.1."),
            Spec("gmm25", where + "gmm25", "A 5x5 grid of equal Gaussians at spacing 1, std 0.08."),
            Spec("gmm-unbalanced", where + "gmm_unbalanced",
                 "Four Gaussians on a square with weights 0.6, 0.25, 0.1, 0.05: mode seeking vs covering shows."),
            Spec("gmm-rare", where + "gmm_rare",
                 "Eight Gaussians on a ring of radius 2, std 0.1: four heavy (24% each) between four rare ones (1% each)."),
            Spec("gmm-hd", where + "gmm_hd",
                 "``modes`` equal Gaussians in ``dim`` dimensions (std 0.2), means at random directions on a sphere of radius 2."),
        ]

    @staticmethod
    @hookimpl
    def register_teachers() -> list[Spec]:
        """The exact mixture teacher."""
        return [Spec("analytic-gmm", "bregzoo_zoo.mixtures:analytic_gmm", "exact denoiser of a diffused Gaussian mixture")]


class mlp:
    @staticmethod
    @hookimpl
    def register_backbones() -> list[Spec]:
        """The MLP backbone."""
        return [Spec("mlp", "bregzoo_zoo.mlp:mlp", "time-conditioned residual MLP for low-dimensional data")]


class images:
    @staticmethod
    @hookimpl
    def register_datasets() -> list[Spec]:
        """The image datasets."""
        where = "bregzoo_zoo.images:"
        return [
            Spec("digits", where + "digits",
                 "scikit-learn's 8x8 handwritten digits, fixed train/test split (shipped, no download)"),
            Spec("cifar10", where + "cifar10", "CIFAR-10 32x32 from a local folder (official binary format)"),
            Spec("image-folder", where + "image_folder", "any folder of PNG/JPEG images, resized and center-cropped"),
        ]


class unet:
    @staticmethod
    @hookimpl
    def register_backbones() -> list[Spec]:
        """The image UNet (denoiser/generator) and its encoder-only scalar head (ratio estimator)."""
        return [Spec("unet", "bregzoo_zoo.unet:unet",
                     "compact time-conditioned UNet for 8x8..32x32 images; scalar_output gives a conv estimator")]


class ddpm_cifar:
    @staticmethod
    @hookimpl
    def register_backbones() -> list[Spec]:
        """The DDPM CIFAR-10 UNet."""
        return [Spec("ddpm-cifar", "bregzoo_zoo.ddpm_cifar:ddpm_cifar",
                     "the DDPM CIFAR-10 UNet (35.7M params), optionally loaded from a diffusers folder")]

    @staticmethod
    @hookimpl
    def register_teachers() -> list[Spec]:
        """Diffusers-format DDPM checkpoints."""
        return [Spec("ddpm", "bregzoo_zoo.ddpm_cifar:ddpm",
                     "a local diffusers DDPM checkpoint folder (eps-prediction, 1000 steps) as a denoiser")]


class edm:
    @staticmethod
    @hookimpl
    def register_backbones() -> list[Spec]:
        """EDM's SongUNet (DDPM++ / NCSN++)."""
        return [Spec("edm", "bregzoo_zoo.edm:edm_backbone",
                     "EDM's DDPM++/NCSN++ SongUNet (55.7M params), or a converted EDM network (path=DIR)")]

    @staticmethod
    @hookimpl
    def register_teachers() -> list[Spec]:
        """Converted NVlabs/edm networks."""
        return [Spec("edm", "bregzoo_zoo.edm:edm_teacher",
                     "an NVlabs/edm network converted by 'bregzoo convert edm-pkl' (edm:path=DIR)")]

    @staticmethod
    @hookimpl
    def register_commands(app: Any) -> None:
        """Add ``bregzoo convert edm-pkl``."""
        from bregzoo_zoo import edm_convert_cmd

        edm_convert_cmd.add_to(app)


class timm_trunk:
    @staticmethod
    @hookimpl
    def register_backbones() -> list[Spec]:
        """timm models as time-conditioned scalar trunks."""
        return [Spec("timm", "bregzoo_zoo.timm_trunk:timm_trunk",
                     "any timm model (timm:model=resnet18) as a time-conditioned ratio-estimator trunk")]


class fidelity:
    @staticmethod
    @hookimpl
    def register_metrics() -> list[Spec]:
        """FID, KID and precision/recall through torch-fidelity."""
        where = "bregzoo_zoo.fidelity:"
        return [
            Spec("fid", where + "fid", "Frechet distance in digits-cnn or InceptionV3 features (torch-fidelity)"),
            Spec("kid", where + "kid", "kernel distance in digits-cnn or InceptionV3 features (torch-fidelity)"),
            Spec("prc", where + "prc", "precision/recall in digits-cnn or InceptionV3 features (torch-fidelity)"),
        ]


class metrics2d:
    @staticmethod
    @hookimpl
    def register_metrics() -> list[Spec]:
        """The Gaussian-mixture sample-quality metrics."""
        where = "bregzoo_zoo.metrics2d:"
        return [
            Spec("mmd", where + "MMD", "unbiased MMD² to a fixed-seed reference sample, RBF kernels at fixed bandwidths"),
            Spec("w2", where + "W2", "exact 2-Wasserstein distance to a fixed-seed reference sample (≤ 2,000 points)"),
            Spec("sliced-w2", where + "SlicedW2", "sliced 2-Wasserstein distance to a fixed-seed reference sample, any dimension"),
            Spec("mode-recall", where + "ModeRecall", "fraction of mixture modes that receive their share of samples"),
            Spec("precision", where + "Precision", "fraction of samples within 3 std (2-D; same mass in d dims) of a mode"),
            Spec("nll", where + "NLL", "mean negative log-likelihood under the true mixture"),
        ]


class teacher_dir:
    @staticmethod
    @hookimpl
    def register_teachers() -> list[Spec]:
        """Teachers trained by ``bregzoo teach``."""
        return [Spec("bregzoo", "bregzoo_zoo.teacher_dir:bregzoo_teacher",
                     "a teacher directory written by 'bregzoo teach' (bregzoo:path=DIR)")]
