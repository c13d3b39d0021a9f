"""Which installed distribution (and version) provides a divergence: recorded with every leaderboard row."""

from __future__ import annotations

from bregzoo.plugins import get_host
from bregzoo.registry import parse_spec


def divergence_provenance(spec: str) -> dict[str, str]:
    """``{"dist", "version", "plugin"}`` of the plugin that registered ``spec``'s divergence."""
    p = get_host().provider_of("divergence", parse_spec(spec)[0])
    return {"dist": p.dist if p else "?", "version": p.version if p else "?", "plugin": p.plugin if p else "?"}
