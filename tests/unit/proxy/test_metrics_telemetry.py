"""Which exporters and resource the standard OTEL_* variables select."""

from __future__ import annotations

import pytest

from mrm.core.telemetry import exporters, resource

_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)


def test_nothing_is_exported_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert exporters("traces") == exporters("metrics") == []


def test_an_otlp_endpoint_turns_otlp_on_for_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert exporters("traces") == exporters("metrics") == ["otlp"]
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")  # an explicit choice wins
    assert exporters("metrics") == []
    assert exporters("traces") == ["otlp"]


def test_a_signal_endpoint_only_turns_its_signal_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4317")
    assert exporters("traces") == ["otlp"]
    assert exporters("metrics") == []


def test_lists_unknown_names_and_disabling(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console, OTLP,zipkin,otlp")
    assert exporters("traces") == ["console", "otlp"]
    assert "'zipkin' is not supported" in caplog.text
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert exporters("traces") == ["console", "otlp"]
    assert "'http/protobuf' is not installed" in caplog.text
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert exporters("traces") == []


def test_otel_service_name_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resource("mrm").attributes["service.name"] == "mrm"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=risk")
    assert resource("mrm").attributes["service.name"] == "from-attrs"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "proxy-eu-1")
    attrs = resource("mrm").attributes
    assert attrs["service.name"] == "proxy-eu-1"
    assert attrs["team"] == "risk"
