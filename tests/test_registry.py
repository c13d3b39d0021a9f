"""Registries: wildcard listing, building by name or by 'name:key=value', and helpful errors."""

from __future__ import annotations

import pytest

from bregzoo import (
    BregzooError,
    PluginError,
    Spec,
    UnknownNameError,
    create_divergence,
    create_ratio_estimator,
    list_divergences,
)
from bregzoo.plugins import KINDS
from bregzoo.registry import Provider, Registry, parse_spec, validate_name


def test_wildcards_select_and_sort():
    kl = list_divergences("*kl*")
    assert kl == sorted(kl)
    assert {"bkl", "kl", "reverse-kl", "softened-rkl", "ukl"} <= set(kl)
    assert "lsif" not in kl
    assert list_divergences("reverse-kl") == ["reverse-kl"]
    assert list_divergences("nothing-matches-*") == []
    assert list_divergences() == sorted(list_divergences())


def test_keyword_and_command_line_spellings_build_the_same_object():
    a = create_divergence("power", alpha=0.5)
    assert a == create_divergence("power:alpha=0.5") == create_divergence("  power : alpha = 0.5 ")
    assert a != create_divergence("power:alpha=0.25")
    assert create_divergence("power").alpha == 0.5  # the default


@pytest.mark.parametrize("name", list_divergences())
def test_spec_round_trips(name):
    try:
        div = create_divergence(name)
    except BregzooError:
        pytest.skip(f"{name} needs parameters")
    assert create_divergence(div.spec()) == div
    assert create_divergence(div.name, **div.params()) == div


@pytest.mark.parametrize("alpha", [0.5, -0.5, 2, 1e-12, 0.1 + 0.2])
def test_power_spec_round_trips_exactly(alpha):
    div = create_divergence("power", alpha=alpha)
    assert create_divergence(div.spec()) == div


def test_unknown_name_lists_close_matches_and_asks_about_plugins():
    with pytest.raises(UnknownNameError) as err:
        create_divergence("reverse-kll")
    msg = str(err.value)
    assert "'reverse-kl'" in msg and "did you mean" in msg
    assert "installed?" in msg
    assert isinstance(err.value, BregzooError) and isinstance(err.value, KeyError)


def test_unknown_name_without_close_matches_still_says_what_exists():
    with pytest.raises(UnknownNameError, match="installed") as err:
        create_divergence("zzzzzz")
    assert "did you mean" not in str(err.value) and "reverse-kl" in str(err.value)


def test_unknown_parameter_names_what_is_accepted():
    with pytest.raises(BregzooError, match=r"'power' has no parameter 'beta'.*accepts: alpha"):
        create_divergence("power", beta=1)
    with pytest.raises(BregzooError, match=r"'kl' has no parameter 'alpha'.*no parameters"):
        create_divergence("kl:alpha=1")


def test_missing_required_parameter_is_the_users_error_not_the_plugins():
    reg = Registry("thing")
    reg.add(Spec("needs-dim", lambda dim: dim, provider=Provider("p", "dist-p", "1")))
    with pytest.raises(BregzooError, match="'needs-dim' needs parameter 'dim'") as err:
        reg.create("needs-dim")
    assert not isinstance(err.value, PluginError)
    assert reg.create("needs-dim:dim=3") == 3


def test_a_parameter_given_twice_is_an_error():
    with pytest.raises(BregzooError, match="alpha"):
        create_divergence("power:alpha=0.5", alpha=0.25)
    with pytest.raises(BregzooError, match="alpha"):
        create_divergence("power:alpha=0.5,alpha=0.25")


@pytest.mark.parametrize("text, expected", [
    ("power", ("power", {})),
    ("power:alpha=0.5", ("power", {"alpha": 0.5})),
    ("x:a=1,b=true,c=none,d=hello,e=[1, 2]", ("x", {"a": 1, "b": True, "c": None, "d": "hello", "e": [1, 2]})),
    ("bregman:h=power:alpha=0.5", ("bregman", {"h": "power:alpha=0.5"})),
])
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize("text", [
    "", "  ", ":alpha=1", "power:", "power: ", "power:alpha", "power:alpha=", "power:=1",
    "power:alpha=1,", "power:1alpha=2", "power:al pha=2",
])
def test_malformed_specs_are_clear_errors(text):
    with pytest.raises(BregzooError, match="malformed component spec"):
        parse_spec(text)


def test_nested_spec_builds_an_estimator_with_any_divergence():
    est = create_ratio_estimator("bregman:h=power:alpha=0.25")
    assert est.h == create_divergence("power", alpha=0.25)
    assert create_ratio_estimator("bregman", h="hellinger").h == create_divergence("hellinger")


@pytest.mark.parametrize("name", ["reverse-kl", "kl", "power2", "a-1-b"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["Power", "reverse kl", "a/b", "a_b", "", "-a", "a-", "a--b", " kl", "kl\n", None, 3])
def test_invalid_names_are_rejected_at_registration(name):
    with pytest.raises(PluginError, match="invalid component name"):
        Registry("divergence").add(Spec(name, dict))


def test_duplicate_name_names_both_providers():
    reg = Registry("divergence")
    reg.add(Spec("twin", dict, provider=Provider("first.plugin", "first-dist", "1.0")))
    with pytest.raises(PluginError) as err:
        reg.add(Spec("twin", dict, provider=Provider("second.plugin", "second-dist", "2.0")))
    msg = str(err.value)
    assert "'twin'" in msg and "first-dist 1.0" in msg and "second-dist 2.0" in msg
    assert "BREGZOO_DISABLE_PLUGINS" in msg
    assert reg.get("twin").provider.dist == "first-dist"  # the first one stays


def test_factory_bug_is_a_plugin_error_naming_the_distribution():
    def broken(x: int = 1):
        raise ZeroDivisionError("oops")

    reg = Registry("divergence")
    reg.add(Spec("broken", broken, provider=Provider("acme.divs", "acme-divs", "0.3")))
    with pytest.raises(PluginError, match=r"'broken' from acme-divs 0.3.*ZeroDivisionError: oops") as err:
        reg.create("broken")
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_a_spec_value_of_the_wrong_type_is_the_users_error_checked_without_building():
    built = []

    def ranged(width: int = 2, root: str | None = None, scale: float = 1.0) -> list[int]:
        built.append(width)
        return list(range(width))  # a TypeError for width='abc', which the registry must not blame on the plugin

    reg = Registry("backbone")
    reg.add(Spec("ranged", ranged, provider=Provider("p", "dist-p", "1")))
    for call in (reg.check, reg.create):
        with pytest.raises(BregzooError, match=r"backbone 'ranged': width must be int, got 'abc'$") as err:
            call("ranged:width=abc")
        assert not isinstance(err.value, PluginError)
    assert built == ["abc"]  # check() built nothing; create() tried, and the crash was traced to the value
    with pytest.raises(BregzooError, match=r"root must be str or none, got 123; quote it: root='123'"):
        reg.check("ranged:root=123")
    assert reg.create("ranged:width=3,scale=2,root=none") == [0, 1, 2]  # an int is a float; none is allowed


def test_a_plugins_own_check_of_a_value_keeps_its_message():
    def strict(alpha: float = 0.5) -> float:
        if not isinstance(alpha, float):
            raise BregzooError(f"strict: alpha must be a finite real number, got {alpha!r}")
        return alpha

    reg = Registry("divergence")
    reg.add(Spec("strict", strict, provider=Provider("p", "dist-p", "1")))
    with pytest.raises(BregzooError, match="finite real number, got 'nan'"):
        reg.create("strict:alpha=nan")


def test_every_kind_has_a_registry_and_lists_sorted_names():
    from bregzoo.api import list_components

    for kind in KINDS:
        names = list_components(kind)
        assert names == sorted(names)
    assert {"classifier", "lsif", "kliep", "bregman"} <= set(list_components("ratio-estimator"))


def test_unknown_kind_is_a_clear_error():
    from bregzoo.api import list_components

    with pytest.raises(BregzooError, match="unknown component kind 'divergences'.*divergence"):
        list_components("divergences")


def test_a_factory_named_by_string_is_imported_on_first_use_and_checked_like_a_callable(tmp_path, monkeypatch):
    (tmp_path / "acme_heavy.py").write_text(
        "BUILT = []\n\ndef make(width: int = 2):\n    BUILT.append(width)\n    return list(range(width))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys

    reg = Registry("backbone")
    reg.add(Spec("heavy", "acme_heavy:make", provider=Provider("acme.heavy", "acme", "1")))
    assert "acme_heavy" not in sys.modules  # registering imported nothing
    with pytest.raises(BregzooError, match=r"width must be int, got 'abc'"):
        reg.check("heavy:width=abc")  # the target's signature, with its annotations, is used
    with pytest.raises(BregzooError, match=r"has no parameter 'depth'; it accepts: width"):
        reg.check("heavy:depth=3")
    assert reg.create("heavy:width=3") == [0, 1, 2]
    assert sys.modules["acme_heavy"].BUILT == [3]


@pytest.mark.parametrize("target, why", [("acme_nowhere:make", "ModuleNotFoundError"),
                                         ("bregzoo.registry:nope", "AttributeError")])
def test_a_factory_name_that_does_not_import_is_a_plugin_error(target, why):
    reg = Registry("backbone")
    reg.add(Spec("gone", target, provider=Provider("acme.gone", "acme", "1")))
    with pytest.raises(PluginError, match=rf"cannot import the factory '{target}': {why}"):
        reg.create("gone")


def test_a_malformed_factory_name_is_refused_at_registration():
    with pytest.raises(PluginError, match="'package.module:attr'"):
        Spec("bad", "acme_heavy.make")
