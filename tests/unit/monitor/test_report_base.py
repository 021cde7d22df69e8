"""The link an alert carries to a model's drift page."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrm.core.settings import Settings
from mrm.monitor.app import report_base


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, "http://localhost:8000"),
        ({"http_addr": "0.0.0.0:9000"}, "http://localhost:9000"),
        ({"http_addr": "reports.internal:8000"}, "http://reports.internal:8000"),
        ({"report_base_url": "https://mrm.example.com/"}, "https://mrm.example.com"),
    ],
)
def test_report_base(env: dict[str, str], want: str) -> None:
    assert report_base(Settings(**env)) == want  # type: ignore[arg-type]


def test_tls_makes_the_link_https(tmp_path: Path) -> None:
    settings = Settings(tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "k.pem")
    assert report_base(settings).startswith("https://")
