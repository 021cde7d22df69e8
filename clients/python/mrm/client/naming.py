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
