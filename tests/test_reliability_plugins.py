"""A plugin whose factory fails, through the CLI: reported with its distribution name, the rest keeps working.

Failures at import and at registration (warned about once, strict mode fails fast) are covered in
tests/test_plugins.py: test_plugin_broken_at_import_warns_once_and_the_rest_works,
test_plugin_raising_in_its_hook_warns_and_registers_nothing, test_strict_mode_raises_instead,
test_factory_bug_is_a_plugin_error_naming_the_distribution; and through the CLI in
tests/test_cli_basic.py::test_a_broken_plugin_does_not_break_the_cli.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from bregzoo import hookimpl
from bregzoo.divergence import Divergence
from bregzoo.plugins import get_host
from bregzoo.registry import Spec
from bregzoo_cli.app import get_app


@dataclass(frozen=True)
class Fine(Divergence):
    name = "fine-div"

    def h(self, r):
        return torch.special.xlogy(r, r)


def _broken_factory(**params):
    raise ZeroDivisionError("the plugin's own bug")


class HalfBroken:
    @hookimpl
    def register_divergences(self):
        return [Spec("broken-div", _broken_factory, "a factory that raises"), Fine]


@pytest.fixture
def half_broken():
    host = get_host()
    host.register(HalfBroken(), name="acme-half.plugin", dist="acme-half", version="3.1")
    yield
    host.unregister("acme-half.plugin")


def test_a_failing_factory_is_one_line_naming_the_distribution(half_broken, tmp_path):
    result = CliRunner().invoke(get_app(), ["train", "--divergence", "broken-div", "--out", str(tmp_path / "r"),
                                            "--no-check"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "acme-half" in line and "broken-div" in line and "ZeroDivisionError" in line, line
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_the_rest_keeps_working_next_to_a_failing_factory(half_broken):
    result = CliRunner().invoke(get_app(), ["divergences", "--json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)} if result.exit_code == 0 else {}
    assert result.exit_code == 0, result.output
    assert {"reverse-kl", "fine-div"} <= set(rows)  # the zoo and the plugin's healthy divergence
    assert "broken-div" not in rows
    (warning,) = result.stderr.splitlines()  # and one warning naming the culprit and its distribution
    assert "broken-div" in warning and "acme-half" in warning, warning
    result = CliRunner().invoke(get_app(), ["check", "--divergence", "fine-div", "--quick", "--claims", "weight-*"])
    assert result.exit_code == 0 and "acme-half" not in result.stderr, result.output
