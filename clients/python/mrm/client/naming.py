"""The names MRM accepts: the SDK's names for them, which live in mrm.kernel.names."""

from __future__ import annotations

from mrm.kernel.names import MODEL_NAME, MODEL_NAME_HELP, SEMVER

__all__ = ["MODEL_NAME", "MODEL_NAME_HELP", "SEMVER"]
