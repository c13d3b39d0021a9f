"""bregzoo.testing's registration helpers: a plugin object that exists only for one test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from bregzoo_alpha.divergences import AlphaDivergence

from bregzoo import create_divergence, hookimpl, list_divergences
from bregzoo.testing import check_divergence, register_inline_plugin


@dataclass(frozen=True)
class Chi2(AlphaDivergence):
    """Pearson chi2(q||p): the alpha-divergence at alpha = 3, under a name of its own."""

    alpha: float = 3.0
    name = "my-chi2"


class Chi2Plugin:
    @hookimpl
    def register_divergences(self):
        return [Chi2]


def test_registered_for_this_test_only():
    with register_inline_plugin(Chi2Plugin(), name="chi2-plugin"):
        div = create_divergence("my-chi2")
        assert torch.equal(div.log_weight(torch.tensor([0.0, 2.0])), torch.tensor([0.0, 2.0]))  # omega = r
        check_divergence(div)
    assert "my-chi2" not in list_divergences()


def test_registered_with_the_fixture(bregzoo_inline_plugin):
    bregzoo_inline_plugin(Chi2Plugin(), name="chi2-plugin")
    assert "my-chi2" in list_divergences()
