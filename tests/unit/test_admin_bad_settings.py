"""A bad MRM_* setting stops `mrm` before anything starts: exit 2, the variable named,
what it should be, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mrm.admin import main


@pytest.mark.parametrize(
    ("name", "value", "want"),
    [
        ("MRM_PROXY_SHIPPER", "bogus", "Input should be 'thread' or 'process'"),
        ("MRM_PROXY_SHIPPER_NICE", "40", "less than or equal to 19"),
        ("MRM_PROXY_SHIPPER_NICE", "-1", "greater than or equal to 0"),
        ("MRM_PROXY_QUEUE_MAX", "0", "greater than or equal to 1"),
        ("MRM_PROXY_WORKERS", "many", "valid integer"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, want: str
) -> None:
    monkeypatch.setenv("MRM_HOME", str(tmp_path))
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["serve", "proxy"])
    assert result.exit_code == 2
    assert f"Error: {name}: " in result.output
    assert want in result.output
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing was started or written
