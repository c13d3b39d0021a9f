"""``bregzoo check``: numerical verification of every unification claim (docs/unification.md).

Example:
    >>> from bregzoo.check import run_checks
    >>> rows = run_checks("kl", claims="gradient-*", quick=True)
    >>> [(r.claim, r.passed) for r in rows if r.subject == "kl"]
    [('gradient-1d', True), ('gradient-2d', True)]
"""

from bregzoo.check.result import ClaimResult
from bregzoo.check.runner import check_divergence_claims, check_estimator_claims, list_claims, run_checks

__all__ = ["ClaimResult", "check_divergence_claims", "check_estimator_claims", "list_claims", "run_checks"]
