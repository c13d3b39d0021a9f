"""bregzoo-alpha: an example third-party bregzoo plugin package.

It adds Amari's alpha-divergences (``alpha:alpha=A``), the RuLSIF ratio estimator (``rulsif:alpha=A``)
and the ``bregzoo alpha-sweep`` command, all through the ``bregzoo`` entry-point group declared in
its pyproject.toml. bregzoo's own source is untouched.
"""

__version__ = "0.1.0"
