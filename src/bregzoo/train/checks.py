"""Before training: the quick ``bregzoo check`` claims for the divergence and estimator a run uses."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bregzoo.divergence import Divergence
from bregzoo.errors import ClaimsFailedError
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
    """Stop on a failed claim unless ``force``: training on a broken weight would waste the run.

    The message names every failed claim (and its subject) and the first one's detail, on one line;
    ``ClaimsFailedError`` exits with code 1, as ``bregzoo check`` does for the same failures.
    """
    failed = [r for r in rows if not r.get("passed")]
    if not failed or force:
        return
    by_subject: dict[str, list[str]] = {}
    for r in failed:
        by_subject.setdefault(str(r.get("subject")), []).append(str(r.get("claim")))
    names = "; ".join(f"{', '.join(claims)} for {subject!r}" for subject, claims in by_subject.items())
    first = failed[0]
    detail = " ".join(str(first.get("detail") or first.get("quantity")).split())
    detail = detail if len(detail) <= 240 else detail[:237] + "..."
    spec = next(iter(by_subject))
    raise ClaimsFailedError(
        f"{len(failed)} unification claim(s) failed before training: {names}. First, {first.get('claim')}: {detail}. "
        f"Run 'bregzoo check -d {spec}' for the table; pass --force to train anyway, or --no-check to skip the checks"
    )
