"""`make test` runs `buf breaking` against proto/release.binpb, the contract as
last released. These tests show the check bites: a removed or renumbered field
in a copy of proto/ fails it, an added field passes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _breaking(tmp_path: Path, edit: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    registry = tmp_path / "proto" / "mrm" / "v1" / "registry.proto"
    text = registry.read_text()
    assert edit[0] in text
    registry.write_text(text.replace(edit[0], edit[1], 1))
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(ROOT / "proto" / "release.binpb")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (("  string reason = 3;\n  // Who made", "  // Who made"), 'field "3" with name "reason"'),
        (("  string actor = 4;\n", "  string actor = 40;\n"), 'field "4" with name "actor"'),
    ],
    ids=["removed", "renumbered"],
)
def test_a_breaking_change_fails_the_check(
    tmp_path: Path, edit: tuple[str, str], complaint: str
) -> None:
    done = _breaking(tmp_path, edit)
    assert done.returncode != 0
    assert complaint in done.stdout + done.stderr


def test_an_added_field_passes_the_check(tmp_path: Path) -> None:
    done = _breaking(
        tmp_path,
        ("  Identity identity = 7;\n}", "  Identity identity = 7;\n  string note = 99;\n}"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
