"""report.html and report.pdf: the model card and the summaries for people.

Both are deterministic functions of model_card.json and summary.json (no
clock, fixed PDF dates and ids), so the verifier renders them again and
compares bytes. The HTML is self-contained: inline style, no script, nothing
fetched. The PDF uses fpdf2's core fonts, which cover Latin-1 only; other
characters are shown as "?" there (the HTML and the JSON keep them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

import jinja2

_MAX_ROWS = 500  # per table; the JSON documents hold every row


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str = ""
    omitted: int = 0


@dataclass(frozen=True)
class Report:
    title: str
    subtitle: str
    tables: list[Table] = field(default_factory=list)


# Bump whenever derive.py or this module would turn the same records into other
# bytes: a verifier re-derives only the layout it implements.
LAYOUT = "2"


def renderer() -> dict[str, str]:
    """What the derived documents' bytes depend on besides the records: this layout and
    the PDF library's version."""
    return {"layout": LAYOUT, "fpdf2": package_version("fpdf2")}


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value) or "-"
    return str(value)


def _who(identity: Any, actor: Any) -> str:
    if not isinstance(identity, dict) or not identity:
        return f"{actor} (no identity recorded)"
    verified = identity.get("verified") or {}
    said = identity.get("unverified") or {}
    parts = [f"{identity.get('principal', actor)} via {identity.get('method', '?')}"]
    if verified:
        parts.append("verified: " + _text(verified))
    if said:
        parts.append("unverified: " + _text(said))
    return "; ".join(parts)


def _ack(ack: Mapping[str, Any] | None) -> str:
    if ack is None:
        return "not acknowledged"
    return f"{ack['recorded_at']} by {ack['actor']}: {_text(ack['note'])} ({ack['record_id']})"


def _table(title: str, columns: Sequence[str], rows: list[list[str]], note: str = "") -> Table:
    return Table(title, columns, rows[:_MAX_ROWS], note, max(0, len(rows) - _MAX_ROWS))


def build_report(card: Mapping[str, Any], summary: Mapping[str, Any]) -> Report:
    scope, log = card["scope"], card["log"]
    text = card.get("card") or {}
    title = f"Evidence: {scope['model']}" + (f" {scope['version']}" if scope["version"] else "")
    subtitle = (
        f"log {log['origin']}, signed tree size {log['tree_size']}, root {log['root_hash']}"
        + (f"; decisions since {scope['since']}" if scope["since"] else "")
    )
    source = text.get("source") or {}
    tables = [
        _table(
            "Model card",
            ["field", "value"],
            [
                [k.replace("_", " "), _text(text.get(k))]
                for k in ("purpose", "owner", "intended_use", "limitations", "risk_tier", "notes")
            ]
            + [["recorded in", _text(source.get("record_id"))]],
            "" if text else "No [card] was recorded at deploy (mrm.toml [card]).",
        ),
        _table(
            "Versions and deploy facts",
            ["version", "registered", "by (identity)", "artifacts sha256", "source", "record"],
            [
                [
                    v["version"],
                    v["recorded_at"],
                    _who(v["identity"], v["registered_by"]),
                    _text(v["artifacts"]),
                    _text(v["source_commit"]),
                    v["record_id"],
                ]
                for v in card["versions"]
            ],
        ),
        _table(
            "Performance at deploy",
            ["version", "metrics", "record"],
            [[p["version"], _text(p["metrics"]), p["record_id"]] for p in card["performance"]],
        ),
        _table(
            "Data lineage",
            ["version", "training data", "record"],
            [
                [d["version"], _text({k: v for k, v in d.items() if k not in _REF}), d["record_id"]]
                for d in card["data_lineage"]
            ],
        ),
        _table(
            "Explainability baseline",
            ["version", "method", "expected value", "top features", "record"],
            [
                [
                    e["version"],
                    _text(e["method"]),
                    _text(e["expected_value"]),
                    _text(
                        [
                            f"{f.get('feature')} {_text(f.get('mean_abs_shap'))}"
                            for f in e["top_features"]
                        ]
                    ),
                    e["record_id"],
                ]
                for e in card["explainability"]
            ],
        ),
        _table(
            "Fairness at deploy",
            [
                "version",
                "attribute",
                "DP ratio [95% CI]",
                "DP difference",
                "EO difference",
                "groups (rows, selection rate)",
                "gates",
                "record",
            ],
            [
                [
                    f["version"],
                    a["attribute"],
                    f"{_text(a['demographic_parity_ratio'])} "
                    f"[{_text(a['demographic_parity_ratio_ci'])}]",
                    _text(a["demographic_parity_difference"]),
                    _text(a["equalized_odds_difference"]),
                    _text(
                        [
                            f"{g}: {_text(v['count'])}, {_text(v['selection_rate'])}"
                            + (" (small)" if v["small"] else "")
                            for g, v in a["groups"].items()
                        ]
                    ),
                    "passed" if f["passed"] else _text(f["failures"]) or "failed",
                    f["record_id"],
                ]
                for f in summary["fairness"]
                for a in f["attributes"]
            ],
            "" if summary["fairness"] else "No FAIRNESS_SNAPSHOT record for this model.",
        ),
        _table(
            "Deployments",
            ["version", "when", "action", "stage", "by (identity)", "reason", "record"],
            [
                [
                    d["version"],
                    d["recorded_at"],
                    _text(d["action"]),
                    _text(d["stage"]),
                    _who(d["identity"], d["actor"]),
                    _text(d["reason"] or d["reasons"]),
                    d["record_id"],
                ]
                for d in card["deployments"]
            ],
        ),
        _table(
            "Drift windows",
            ["version", "window", "rows", "breaches", "worst feature", "record"],
            [
                [
                    d["version"],
                    f"{d['window_start']} .. {d['window_end']}",
                    _text(d["rows"]),
                    _text(d["breaches"]),
                    _text(d["worst_feature"]),
                    d["record_id"],
                ]
                for d in summary["drift"]["records"]
            ],
            f"{summary['drift']['windows']} windows, "
            f"{summary['drift']['windows_with_breaches']} with a threshold crossed.",
        ),
        _table(
            "Alerts and acknowledgements",
            ["version", "raised", "metric", "summary", "acknowledged", "record"],
            [
                [
                    a["version"],
                    a["recorded_at"],
                    _text(a["metric"]),
                    _text(a["summary"]),
                    _ack(a["acknowledgement"]),
                    a["record_id"],
                ]
                for a in summary["alerts"]
            ],
        ),
        _table(
            "Records in this bundle",
            ["kind", "count"],
            [[k, str(n)] for k, n in summary["records"].items()],
            "Decisions (PREDICTION, EXPLANATION, OUTCOME) "
            + (f"since {scope['since']}." if scope["since"] else "of all time."),
        ),
    ]
    if summary["access"]:
        tables.append(
            _table(
                "Access",
                ["when", "by", "what", "record"],
                [
                    [a["recorded_at"], a["actor"], _text(a["body"]), a["record_id"]]
                    for a in summary["access"]
                ],
            )
        )
    return Report(title, subtitle, tables)


_REF = frozenset({"record_id", "leaf_index", "recorded_at", "version"})

_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{ r.title }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;
word-break:break-word}
th{background:#f2f2f2}.note{color:#555}code{font-size:12px}
</style></head><body>
<h1>{{ r.title }}</h1>
<p class="note">{{ r.subtitle }}</p>
<p class="note">Every figure names the ledger record it comes from. Check this bundle with
<code>mrmctl evidence verify BUNDLE --vkey VKEY</code> or by hand (docs/evidence.md).</p>
{% for t in r.tables %}<h2>{{ t.title }}</h2>
{% if t.note %}<p class="note">{{ t.note }}</p>{% endif %}
{% if t.rows %}<table><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in t.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>{% else %}<p class="note">None.</p>{% endif %}
{% if t.omitted %}<p class="note">{{ t.omitted }} more rows in the JSON documents.</p>{% endif %}
{% endfor %}</body></html>
"""
)


def render_html(report: Report) -> bytes:
    return _HTML.render(r=report).encode()


def _latin1(text: str) -> str:
    return text.encode("latin-1", errors="replace").decode("latin-1")


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def render_pdf(report: Report) -> bytes:
    from fpdf import FPDF  # imported here: only rendering needs it

    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_creation_date(_EPOCH)  # a fixed date keeps the bytes (and the file id) stable
    pdf.set_title(_latin1(report.title))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, _latin1(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 5, _latin1(report.subtitle), new_x="LMARGIN", new_y="NEXT")
    for t in report.tables:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, _latin1(t.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 7)
        if t.note:
            pdf.multi_cell(0, 4, _latin1(t.note), new_x="LMARGIN", new_y="NEXT")
        if not t.rows:
            pdf.multi_cell(0, 4, "None.", new_x="LMARGIN", new_y="NEXT")
            continue
        with pdf.table(text_align="LEFT", line_height=3.5) as table:
            table.row([_latin1(c) for c in t.columns])
            for row in t.rows:
                table.row([_latin1(v) for v in row])
        if t.omitted:
            pdf.multi_cell(0, 4, f"{t.omitted} more rows in the JSON documents.")
    return bytes(pdf.output())
