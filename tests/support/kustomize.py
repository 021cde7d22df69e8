"""The subset of kustomize the manifests in deploy/k8s use, to render them in tests.

kustomize itself is not installed here. This reads `resources` (files and
directories with their own kustomization.yaml), `patches` (strategic-merge
files that name their target by kind and name) and `images`, and refuses any
other field, so a manifest that starts relying on more fails loudly instead of
being checked wrongly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}


class KustomizeError(Exception):
    """A kustomization uses a field this subset does not support, or points nowhere."""


def load_yaml(path: Path) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        if not isinstance(d, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


def key(obj: Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _merge(base: Any, patch: Any) -> Any:
    # Strategic merge for what the overlays patch: nested mappings. Lists are
    # replaced, which is what a strategic merge does for lists without a merge key.
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def _set_images(obj: Obj, images: list[Obj]) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        for image in images:
            if container["image"] == image["name"]:
                container["image"] = f"{image['newName']}:{image['newTag']}"


def build(directory: Path) -> list[Obj]:
    """Render the kustomization in `directory` into its list of objects."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    (spec,) = load_yaml(kfile)
    unsupported = set(spec) - SUPPORTED
    if unsupported:
        raise KustomizeError(f"{kfile}: unsupported field(s) {sorted(unsupported)}")
    objects: dict[tuple[str, str, str], Obj] = {}
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            loaded = build(path)
        elif path.is_file():
            loaded = load_yaml(path)
        else:
            raise KustomizeError(f"{kfile}: resource {entry} does not exist")
        for obj in loaded:
            if key(obj) in objects:
                raise KustomizeError(f"{kfile}: {key(obj)} is defined twice")
            objects[key(obj)] = obj
    for entry in spec.get("patches", []):
        if set(entry) != {"path"}:
            raise KustomizeError(f"{kfile}: only file patches are supported, got {entry}")
        path = directory / entry["path"]
        if not path.is_file():
            raise KustomizeError(f"{kfile}: patch {entry['path']} does not exist")
        for patch in load_yaml(path):
            if key(patch) not in objects:
                raise KustomizeError(f"{path}: patches {key(patch)}, which is not a resource")
            objects[key(patch)] = _merge(objects[key(patch)], patch)
    result = list(objects.values())
    for obj in result:
        _set_images(obj, spec.get("images", []))
    return result
