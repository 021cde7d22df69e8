"""The names MRM accepts, shared by the services and the clients that check early."""

from __future__ import annotations

import re

# semver.org's own regular expression (MAJOR.MINOR.PATCH, optional pre-release and build).
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
MODEL_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
MODEL_NAME_HELP = "a lowercase letter, then up to 62 lowercase letters, digits or '-'"


def model_name(value: str) -> str:
    """`value` if it is a model name; otherwise ValueError saying what one is."""
    if not MODEL_NAME.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a model name (want {MODEL_NAME_HELP}, e.g. credit-risk)"
        )
    return value


def semver(value: str) -> tuple[int, int, int, str]:
    """(major, minor, patch, pre-release) of a semver version; ValueError otherwise."""
    match = SEMVER.fullmatch(value)
    if match is None or len(value) > 64:
        raise ValueError(f"{value[:80]!r} is not semver (want MAJOR.MINOR.PATCH, e.g. 1.2.4)")
    return int(match[1]), int(match[2]), int(match[3]), match[4] or ""
