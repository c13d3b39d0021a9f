"""The plugin manager: loads every ``bregzoo`` entry point once, with provenance, and survives failures.

Environment:
    BREGZOO_DISABLE_PLUGINS=a,b   skip plugins by distribution name (or entry-point name).
    BREGZOO_STRICT_PLUGINS=1      raise on a broken plugin instead of warning and going on.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from bregzoo import hookspecs
from bregzoo.errors import PluginError
from bregzoo.registry import Provider, Registry, Spec

ENTRY_POINT_GROUP = "bregzoo"

# Registry kind -> the hook that fills it.
KINDS: dict[str, str] = {
    "divergence": "register_divergences",
    "ratio-estimator": "register_ratio_estimators",
    "backbone": "register_backbones",
    "teacher": "register_teachers",
    "dataset": "register_datasets",
    "metric": "register_metrics",
}


# Every hook name that hookspecs.py declares, for error messages.
HOOKS = sorted(n for n, f in vars(hookspecs).items() if hasattr(f, f"{ENTRY_POINT_GROUP}_spec"))


@dataclass
class PluginInfo:
    """What one plugin is and provides; ``error`` is set when it failed to load."""

    name: str
    dist: str
    version: str
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


def strict() -> bool:
    return os.environ.get("BREGZOO_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _normalise(name: str) -> str:
    """PEP 503 form, so that ``My_Plugin`` blocks the distribution ``my-plugin``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def disabled() -> set[str]:
    """Normalised names from BREGZOO_DISABLE_PLUGINS."""
    return {_normalise(p.strip()) for p in os.environ.get("BREGZOO_DISABLE_PLUGINS", "").split(",") if p.strip()}


def _as_spec(item: Any) -> Spec:
    """Accept a ``Spec`` or a class with ``name`` (a Divergence subclass) and its ``summary``."""
    if isinstance(item, Spec):
        return item
    if inspect.isclass(item) and isinstance(getattr(item, "name", None), str):
        return Spec(item.name, item, getattr(item, "summary", "") or "")
    raise PluginError(f"a register_* hook returned {item!r}; expected a Spec or a class with a 'name'")


class _Manager(pluggy.PluginManager):
    """pluggy's manager, except that a plugin's module attributes are not inspected for hooks.

    A hook is never a module, and reading any attribute of a lazily imported module (``torch =
    lazy_loader.load("torch")`` in a plugin module) imports it: pluggy's check of each name would
    import torch for every plugin that defers it.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        # isinstance settles on the object's type (a ModuleType subclass) and reads nothing from it.
        if isinstance(inspect.getattr_static(plugin, name, None), ModuleType):
            return None
        return super().parse_hookimpl_opts(plugin, name)


class PluginHost:
    """A pluggy manager plus one registry per component kind."""

    def __init__(self) -> None:
        self.pm = _Manager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self.infos: dict[str, PluginInfo] = {}

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import and register every installed ``bregzoo`` entry point, one at a time."""
        blocked = disabled()
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            name = f"{dist}.{ep.name}" if ep.dist else ep.name
            if blocked & {_normalise(dist), _normalise(ep.name), _normalise(name)}:
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=name, dist=dist, version=version)
            except Exception as exc:
                self._fail(PluginInfo(name, dist, version), exc)
        self.pm.check_pending()

    def _fail(self, info: PluginInfo, exc: Exception) -> None:
        if strict():
            raise PluginError(f"plugin {info.name!r} from {info.dist} {info.version} failed: {exc}") from exc
        info.error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the message
        self.infos[info.name] = info
        print(
            f"bregzoo: warning: plugin {info.name!r} from {info.dist} {info.version} skipped: "
            f"{info.error} (set BREGZOO_STRICT_PLUGINS=1 to fail instead)",
            file=sys.stderr,
        )

    def register(self, plugin: ModuleType | object, name: str, dist: str = "(inline)", version: str = "") -> PluginInfo:
        """Register one plugin and collect its specs; all-or-nothing, so a failure leaves no trace."""
        if name in self.infos and self.infos[name].error is None:
            raise PluginError(f"a plugin named {name!r} is already registered")
        self.pm.register(plugin, name=name)
        provider = Provider(name, dist, version)
        info = PluginInfo(name, dist, version)
        try:
            try:
                self.pm.check_pending()  # an impl whose name is no hookspec (a misspelt hook)
            except pluggy.PluginValidationError as exc:
                raise PluginError(
                    f"plugin {name!r} from {dist}: {exc}; bregzoo's hooks are {', '.join(HOOKS)}"
                ) from exc
            info.hooks = sorted(
                {h.name for h in self.pm.get_hookcallers(plugin) or []}
            )
            collected: dict[str, list[Spec]] = {}
            for kind, hook in KINDS.items():
                for impl in getattr(self.pm.hook, hook).get_hookimpls():
                    if impl.plugin is plugin:
                        items = impl.function() or []
                        specs = [_as_spec(i) for i in items]
                        collected[kind] = [Spec(s.name, s.factory, s.summary, provider) for s in specs]
            added: list[tuple[str, str]] = []
            try:
                for kind, specs in collected.items():
                    for spec in specs:
                        self.registries[kind].add(spec)
                        added.append((kind, spec.name))
            except Exception:
                for reg in self.registries.values():
                    reg.remove_provider(name)
                raise
        except Exception:
            self.pm.unregister(plugin)
            raise
        info.provides = {k: sorted(s.name for s in v) for k, v in collected.items() if v}
        self.infos[name] = info
        return info

    def unregister(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for reg in self.registries.values():
            reg.remove_provider(name)
        self.infos.pop(name, None)

    def add_commands(self, app: Any) -> None:
        """Let each plugin add CLI commands; one broken plugin does not take the others down."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as exc:
                info = self.infos.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", "?")
                self._fail(info, exc)

    def provider_of(self, kind: str, name: str) -> Provider | None:
        return self.registries[kind].get(name).provider


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _HOST
    if _HOST is None:
        # Published before loading: a plugin that calls create_*() while registering sees the
        # plugins loaded so far instead of starting a second load (endless recursion).
        _HOST = host = PluginHost()
        try:
            host.load_entry_points()
        except BaseException:
            _HOST = None  # strict mode raised: the next call tries again
            raise
    return _HOST


def reset_host() -> None:
    """Forget the loaded plugins; the next ``get_host()`` reloads them (tests, env changes)."""
    global _HOST
    _HOST = None
