"""The pytest side of ``bregzoo.testing``: the ``bregzoo_inline_plugin`` fixture.

pytest loads this module by itself (bregzoo declares it under the ``pytest11`` entry-point group), so
any test in an environment with bregzoo installed can ask for the fixture. Where plugin autoloading is
off (PYTEST_DISABLE_PLUGIN_AUTOLOAD), put ``from bregzoo.pytest_plugin import bregzoo_inline_plugin``
in a conftest.py. bregzoo itself is imported only when a test uses the fixture.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable, Iterator

import pytest


@pytest.fixture
def bregzoo_inline_plugin() -> Iterator[Callable[..., Any]]:
    """A function ``register(plugin, name="inline-plugin")`` whose registrations end with the test.

    Example:
        def test_mine(bregzoo_inline_plugin):
            bregzoo_inline_plugin(MyPlugin(), name="mine")
            assert "my-divergence" in bregzoo.list_divergences()
    """
    from bregzoo.testing import register_inline_plugin

    with ExitStack() as stack:

        def register(plugin: object, name: str = "inline-plugin") -> Any:
            return stack.enter_context(register_inline_plugin(plugin, name=name))

        yield register
