"""Errors a user can cause. The CLI prints them as one line and exits with code 2 (``exit_code``)."""

from __future__ import annotations


class BregzooError(Exception):
    """A problem with the user's input: says what was wrong and what to do next."""

    exit_code = 2


class UnknownNameError(BregzooError, KeyError):
    """A registry lookup for a name that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(BregzooError):
    """A plugin failed to import, to register, or broke a registry rule."""


class NonFiniteError(BregzooError):
    """A loss or weight became NaN or inf during training; the run stopped before saving that step."""


class ClaimsFailedError(BregzooError):
    """A unification claim failed (before training): exit code 1, the same as a failing ``bregzoo check``."""

    exit_code = 1
