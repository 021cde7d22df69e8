"""Errors `mrmctl deploy` reports as one line, each with the exit code it maps to."""

from __future__ import annotations


class DeployError(Exception):
    """A problem the user can fix, described in one line."""

    exit_code = 2


class GateFailed(DeployError):
    """A check refused the model: the deploy is stopped and recorded as refused."""

    exit_code = 1
