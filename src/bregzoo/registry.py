"""Registries of named components: validated names, wildcard listing, close-match errors.

A component is named in Python as ``create("power", alpha=0.5)`` and on the command line as
``power:alpha=0.5``. Names are lowercase letters, digits and hyphens (torch-fidelity's rule).
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import inspect
import pkgutil
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from bregzoo.errors import BregzooError, PluginError, UnknownNameError

NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Provider:
    """Where a registered name came from: the plugin, its distribution and version."""

    plugin: str
    dist: str
    version: str

    def __str__(self) -> str:
        return f"{self.dist} {self.version} (plugin {self.plugin!r})"


class LazyFactory:
    """A factory named by ``'package.module:attr'``, imported on its first use.

    Registering a plugin then imports nothing heavy: ``bregzoo --help``, ``plugins`` and ``divergences``
    list the zoo without importing torch or a network's module. ``inspect.signature`` sees the target's
    signature, so parameters are checked as for a plain callable.
    """

    def __init__(self, target: str) -> None:
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise PluginError(f"a lazy factory is named 'package.module:attr', got {target!r}")
        self.target = target
        self._resolved: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The named callable (imported once)."""
        if self._resolved is None:
            try:
                self._resolved = pkgutil.resolve_name(self.target)
            except (ImportError, AttributeError, ValueError) as exc:
                raise PluginError(f"cannot import the factory {self.target!r}: {type(exc).__name__}: {exc}") from exc
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        target = self.resolve()
        try:  # resolved annotations, so that _check_types can read 'int' in a module with postponed annotations
            return inspect.signature(target, eval_str=True)
        except Exception:
            return inspect.signature(target)

    def __repr__(self) -> str:
        return f"LazyFactory({self.target!r})"


@dataclass(frozen=True)
class Spec:
    """A named factory that a plugin registers. ``factory(**params)`` builds the component.

    ``factory`` may be a callable or the name of one, ``'package.module:attr'``, imported on first use.
    """

    name: str
    factory: Callable[..., Any] | str
    summary: str = ""
    provider: Provider | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.factory, str):
            object.__setattr__(self, "factory", LazyFactory(self.factory))


def validate_name(name: object) -> str:
    """Return ``name`` if it is lowercase letters, digits and single hyphens; raise otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # match() lets "kl\n" through
        raise PluginError(
            f"invalid component name {name!r}: use lowercase letters, digits and hyphens, "
            "e.g. 'reverse-kl'"
        )
    return name


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    # literal_eval also raises TypeError ("{[1]: 2}": unhashable key) and MemoryError or RecursionError
    # on deeply nested input; none of these is a literal, so the text stays a string.
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes, so ``mult=(1,2,2)`` stays one item."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Split ``'power:alpha=0.5,beta=2'`` into ``('power', {'alpha': 0.5, 'beta': 2})``.

    Values are Python literals where they parse as one (``0.5``, ``(1, 2)``, ``'a,b'``), booleans
    and ``none`` in any case, and plain strings otherwise (``h=power:alpha=0.5`` nests a spec).
    """
    def malformed(why: str) -> BregzooError:
        return BregzooError(
            f"malformed component spec {text!r}: {why}; expected 'name' or "
            "'name:key=value,key=value', e.g. 'power:alpha=0.5'"
        )

    name, colon, rest = str(text).strip().partition(":")
    name = name.strip()
    if not name:
        raise malformed("the name is missing")
    params: dict[str, Any] = {}
    if colon and not rest.strip():
        raise malformed(f"nothing after '{name}:'")
    if colon:
        for item in _split_top_level(rest):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier() or not value.strip():
                raise malformed(f"{item.strip()!r} is not key=value")
            if key in params:
                raise malformed(f"parameter {key!r} is given twice")
            params[key] = _parse_value(value.strip())
    return name, params


class Registry:
    """Named specs of one kind (divergence, backbone, ...), filled by the plugin manager."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._specs: dict[str, Spec] = {}

    def add(self, spec: Spec) -> None:
        """Register ``spec``; a name that is already taken is an error naming both providers."""
        validate_name(spec.name)
        old = self._specs.get(spec.name)
        if old is not None:
            raise PluginError(
                f"duplicate {self.kind} name {spec.name!r}: provided by {old.provider} "
                f"and by {spec.provider}; uninstall or disable one (BREGZOO_DISABLE_PLUGINS)"
            )
        self._specs[spec.name] = spec

    def remove_provider(self, plugin: str) -> None:
        """Drop every spec that ``plugin`` registered."""
        for name in [n for n, s in self._specs.items() if s.provider and s.provider.plugin == plugin]:
            del self._specs[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern`` such as ``'*kl*'``."""
        return sorted(n for n in self._specs if fnmatch.fnmatchcase(n, pattern))

    def get(self, name: str) -> Spec:
        """The spec called ``name``; an unknown name lists close matches."""
        try:
            return self._specs[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._specs), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}. {hint}Known: {', '.join(self.names()) or 'none'}. "
                f"Is the plugin that provides it installed? (bregzoo plugins lists them)"
            ) from None

    def check(self, name_or_spec: str, **params: Any) -> tuple[Spec, dict[str, Any]]:
        """Check what ``create`` would, without calling the factory: the spec's syntax, the name, the
        parameters' names, and the spec's values against the factory's plain annotations (int, float,
        bool, str). Returns the spec and the merged parameters; builds nothing."""
        spec, given, merged = self._parse(name_or_spec, params)
        _check_types(self.kind, spec, given)
        return spec, merged

    def create(self, name_or_spec: str, **params: Any) -> Any:
        """Build a component from a name plus keyword parameters, or from ``'name:key=value'``."""
        spec, given, merged = self._parse(name_or_spec, params)
        try:
            return spec.factory(**merged)
        except BregzooError:  # the plugin's own check of its parameters: its message stands
            raise
        except Exception as exc:  # a plugin's bug, unless the spec gave a value of the wrong type
            _check_types(self.kind, spec, given)
            raise PluginError(
                f"{self.kind} {spec.name!r} from {spec.provider} failed to build: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _parse(self, name_or_spec: str, params: dict[str, Any]) -> tuple[Spec, dict[str, Any], dict[str, Any]]:
        """(spec, the spec string's own parameters, those merged with the keywords), names checked."""
        name, given = parse_spec(name_or_spec)
        both = sorted(set(given) & set(params))
        if both:
            raise BregzooError(
                f"{self.kind} {name_or_spec!r}: parameter(s) {', '.join(both)} given both in the spec "
                "and as keywords; give each once"
            )
        spec = self.get(name)
        merged = {**given, **params}
        _check_params(self.kind, spec, merged)
        return spec, given, merged

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __iter__(self):
        return iter(self._specs[n] for n in self.names())


def _check_params(kind: str, spec: Spec, params: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(spec.factory)
    except (TypeError, ValueError):
        return
    named = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    accepted = [p.name for p in named]
    # A missing required parameter is the user's mistake: say so here, before the factory's
    # TypeError would be reported as a bug in the plugin.
    missing = [p.name for p in named if p.default is p.empty and p.name not in params]
    if missing:
        raise BregzooError(
            f"{kind} {spec.name!r} needs parameter {', '.join(repr(m) for m in missing)}; "
            f"e.g. '{spec.name}:{missing[0]}=...'"
        )
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    for key in params:
        if key not in accepted:
            raise BregzooError(
                f"{kind} {spec.name!r} has no parameter {key!r}; "
                f"it accepts: {', '.join(accepted) or 'no parameters'}"
            )


_PLAIN = {bool: "bool (true or false)", int: "int", float: "float", str: "str", type(None): "none"}


def _check_types(kind: str, spec: Spec, params: dict[str, Any]) -> None:
    """A spec value against its factory's annotation, where that is int, float, bool or str (or a union of
    them and None): 'mlp:width=abc' is the user's mistake, not a plugin that failed to build."""
    try:
        sig = inspect.signature(spec.factory, eval_str=True)
    except Exception:  # an annotation that does not resolve here: leave the values to the factory
        return
    for key, value in params.items():
        p = sig.parameters.get(key)
        if p is None:
            continue
        ann = p.annotation
        allowed = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)
        if not allowed or not all(a in _PLAIN for a in allowed):
            continue  # Any, a tuple, a class: not checked here
        if not any(_is(value, a) for a in allowed):
            raise BregzooError(f"{kind} {spec.name!r}: {key} must be {' or '.join(_PLAIN[a] for a in allowed)}, "
                               f"got {value!r}{_hint(key, value, allowed)}")


def _hint(key: str, value: Any, allowed: tuple[type, ...]) -> str:
    if str in allowed and (value is None or isinstance(value, (int, float, bool))):
        return f"; quote it: {key}='{'none' if value is None else value}'"  # 'none' and 'null' read as None
    if float in allowed and isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return "; give a finite number"
    return ""


def _is(value: Any, tp: type) -> bool:
    if tp is float:  # an int is a float here, as in the config; a bool is neither
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)
