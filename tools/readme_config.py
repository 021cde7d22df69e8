"""Rewrite the configuration reference in README.md from the code (`make docs`)."""

from __future__ import annotations

from pathlib import Path

from mrm.config_docs import markdown

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
head, rest = text.split(BEGIN, 1)
_, tail = rest.split(END, 1)
readme.write_text(f"{head}{BEGIN}\n{markdown()}{END}{tail}")
print(f"updated {readme}")
