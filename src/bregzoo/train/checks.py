"""Before training: the quick ``bregzoo check`` claims for the divergence and estimator a run uses."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bregzoo.divergence import Divergence
from bregzoo.errors import BregzooError
from bregzoo.estimator import RatioEstimator


def run_claim_checks(div: Divergence, estimator: RatioEstimator) -> list[dict[str, Any]]:
    """The quick claim checks for ``div`` and ``estimator``, as JSON-ready dicts."""
    from bregzoo.check import check_divergence_claims, check_estimator_claims

    rows = check_divergence_claims(div, quick=True) + check_estimator_claims(estimator, quick=True)
    return [_plain(r) for r in rows]


def _plain(row: Any) -> dict[str, Any]:
    d = dataclasses.asdict(row) if dataclasses.is_dataclass(row) else dict(vars(row))
    # JSON has no inf/nan: a failed comparison reports inf errors.
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def require_passed(rows: list[dict[str, Any]], force: bool) -> None:
    """Stop on a failed claim unless ``force``: training on a broken weight would waste the run."""
    failed = [r for r in rows if not r.get("passed")]
    if failed and not force:
        names = "; ".join(f"{r.get('claim')} for {r.get('subject')!r} ({r.get('detail') or r.get('quantity')})"
                          for r in failed[:3])
        raise BregzooError(
            f"{len(failed)} unification claim(s) failed before training: {names}. "
            "Run 'bregzoo check' for details; pass --force to train anyway, or --no-check to skip the checks"
        )
