"""[monitor] parsing: defaults, every error naming its key, and the JSON roundtrip."""

from __future__ import annotations

import re
import tomllib

import pytest

from mrm.drift.config import DEFAULTS, MonitorConfig, Thresholds, WindowSpec

TOML = """
[monitor]
min_rows = 50
alpha = 0.05

[[monitor.window]]
rows = 1000
step = 250

[[monitor.window]]
seconds = 3600

[monitor.thresholds]
psi = 0.25
metric_drop = 0.1
"""


def test_defaults() -> None:
    config = MonitorConfig.from_table({})
    assert config == MonitorConfig()
    assert config.windows == (WindowSpec("rows", 500),)
    assert not config.windows[0].rolling
    assert config.min_rows == 200
    assert config.alpha == 0.01
    assert config.thresholds == Thresholds(0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.2, 0.05)
    for key, (default, meaning) in DEFAULTS.items():
        if key.startswith("thresholds."):
            assert getattr(config.thresholds, key.split(".", 1)[1]) == default
        assert meaning


def test_from_toml_and_roundtrip() -> None:
    config = MonitorConfig.from_table(tomllib.loads(TOML)["monitor"])
    assert config.windows == (WindowSpec("rows", 1000, 250), WindowSpec("seconds", 3600))
    assert config.windows[0].rolling
    assert config.thresholds.psi == 0.25
    assert config.thresholds.js == 0.1
    assert MonitorConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"thresholds": {"psi": "x"}}, 'monitor.thresholds.psi: must be a number > 0, got "x"'),
        ({"thresholds": {"js": 0}}, "monitor.thresholds.js: must be a number > 0, got 0"),
        ({"thresholds": {"ks": True}}, "monitor.thresholds.ks: must be a number > 0"),
        ({"thresholds": {"kl": 1.0}}, "monitor.thresholds.kl: unknown key (known: psi, js"),
        ({"colour": "red"}, "monitor.colour: unknown key (known: window, min_rows"),
        ({"alpha": 1.5}, "monitor.alpha: must be a number in (0, 1), got 1.5"),
        ({"min_rows": 0}, "monitor.min_rows: must be an integer > 0, got 0"),
        ({"window": {"rows": 5}}, "monitor.window: must be a non-empty list of tables"),
        ({"window": []}, "monitor.window: must be a non-empty list"),
        ({"window": [{"rows": 5, "seconds": 5}]}, "monitor.window[0]: needs exactly one"),
        ({"window": [{"step": 5}]}, "monitor.window[0]: needs exactly one"),
        ({"window": [{"rows": 5.5}]}, "monitor.window[0].rows: must be an integer > 0"),
        ({"window": [{"rows": 10, "step": 20}]}, "monitor.window[0].step: must be <= rows"),
        ({"window": [{"rows": 10}, {"hours": 1}]}, "monitor.window[1].hours: unknown key"),
        (
            {"window": [{"seconds": 60}, {"rows": 10}, {"rows": 10}]},
            "monitor.window[2]: the same window as monitor.window[1] (rows=10)",
        ),
    ],
)
def test_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        MonitorConfig.from_table(table)
