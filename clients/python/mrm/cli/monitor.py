"""`mrmctl drift` and `mrmctl alerts list|ack`: what the monitor found, and who saw it.

    mrmctl drift credit-risk --since 7d
    mrmctl alerts list --model credit-risk
    mrmctl alerts ack 0190c2a4-... --note "new income source since release 4.2"

Everything shown is read from the ledger through the monitor (DRIFT and ALERT
records); an acknowledgement is itself an ALERT record whose actor is the caller.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table

from mrm.cli.errors import EXIT_OK
from mrm.cli.output import console, emit_json, output_option, rfc3339
from mrm.cli.params import IsoTime
from mrm.cli.session import monitor_session
from mrm.client.monitor import Alert, AlertState
from mrm.tlog.leaf import format_timestamp
from mrm.v1 import ledger_pb2, monitor_pb2

_AGO = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_STATES = {
    "firing": monitor_pb2.ALERT_STATE_FIRING,
    "acknowledged": monitor_pb2.ALERT_STATE_ACKNOWLEDGED,
    "all": monitor_pb2.ALERT_STATE_UNSPECIFIED,
}


class Since(click.ParamType[datetime, Any]):
    """A duration back from now (30m, 12h, 7d, 2w) or an RFC 3339 / ISO 8601 time."""

    name = "DURATION|DATETIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if ago := _AGO.fullmatch(text):
            delta = timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
            return datetime.now(UTC) - delta
        try:
            return IsoTime().convert(text, param, ctx)
        except click.BadParameter:
            self.fail(
                f"{text!r} is neither a duration (30m, 12h, 7d, 2w) nor an ISO 8601 time "
                "(for example 2026-05-01T13:30:00Z)",
                param,
                ctx,
            )


# -- drift ---------------------------------------------------------------------------


def _drift_order(feature: dict[str, Any]) -> tuple[bool, float]:
    """Drifted features first, then by PSI, highest first (unmeasured last)."""
    psi = feature.get("psi")
    return (not feature.get("drifted", False), -(psi if psi is not None else -1.0))


def _feature_json(f: dict[str, Any]) -> dict[str, Any]:
    numeric = f.get("kind") == "numeric"
    return {
        "name": f.get("name"),
        "kind": f.get("kind"),
        "psi": f.get("psi"),
        "js": f.get("js"),
        "ks": f.get("ks") if numeric else None,
        "wasserstein": f.get("wasserstein") if numeric else None,
        "cramers_v": None if numeric else f.get("cramers_v"),
        "p_value": f.get("ks_p") if numeric else f.get("chi2_p"),
        "p_adjusted": f.get("p_adjusted"),
        "missing_share": f.get("missing_share"),
        "out_of_range_share": f.get("out_of_range_share"),
        "drifted": bool(f.get("drifted", False)),
        "reasons": list(f.get("reasons") or []),
    }


def _us(value: Any) -> str | None:
    return format_timestamp(int(value)) if isinstance(value, int) else None


def window_json(record: ledger_pb2.Record) -> dict[str, Any]:
    """A DRIFT record as `mrmctl drift --output json` prints it."""
    body = json.loads(record.body_json) if record.body_json else {}
    window = body.get("window") or {}
    report = body.get("report") or {}
    return {
        "record_id": record.record_id,
        "model": record.model_name,
        "version": record.model_version,
        "recorded_at": rfc3339(record.recorded_at),
        "source": window.get("source", "decisions"),
        "window": {
            "decisions": window.get("decisions"),
            "outcomes": window.get("outcomes"),
            "rows": window.get("rows"),
            "unreadable": window.get("unreadable"),
            "unjoined": window.get("unjoined"),
            "first_recorded_at": _us(window.get("first_recorded_at_us")),
            "last_recorded_at": _us(window.get("last_recorded_at_us")),
            "first_leaf": window.get("first_leaf"),
            "last_leaf": window.get("last_leaf"),
            "spec": window.get("spec"),
        },
        "judged": report.get("judged"),
        "features": sorted(
            (_feature_json(f) for f in report.get("features") or []), key=_drift_order
        ),
        "prediction": report.get("prediction"),
        "scores": None if report.get("scores") is None else _feature_json(report["scores"]),
        "metrics": body.get("metrics"),
        "fairness": body.get("fairness"),
        "breaches": [
            *(report.get("breaches") or []),
            *((body.get("fairness") or {}).get("breaches") or []),
        ],
        "thresholds": body.get("thresholds"),
    }


def latest_windows(views: Iterable[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first `n` views (newest first) of each kind and window spec, in their order:
    a version's 500-row windows do not crowd out its hourly ones."""
    shown: Counter[tuple[str, str]] = Counter()
    out = []
    for view in views:
        kind = (view["source"], json.dumps(view["window"]["spec"], sort_keys=True))
        if shown[kind] < n:
            shown[kind] += 1
            out.append(view)
    return out


def _num(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(float(value), fmt)


def _share(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def _spec(spec: Any) -> str:
    if not isinstance(spec, dict):
        return ""
    unit = "rows" if "rows" in spec else "seconds"
    size = spec.get(unit, spec.get("size", "?"))
    kind = f", step {spec['step']}" if spec.get("step") else ""
    return f" ({size} {unit}{kind})"


def _print_window(w: dict[str, Any]) -> None:
    out = console()
    win = w["window"]
    if w["source"] == "outcomes":
        what = f"{win['outcomes']} outcomes ({win['rows']} joined to their decisions)"
    else:
        what = f"{win['decisions']} decisions{_spec(win['spec'])}"
    out.print(
        f"[bold]{w['model']} {w['version']}[/bold]: window of {what}, "
        f"{win['first_recorded_at']} .. {win['last_recorded_at']}, "
        f"leaves {win['first_leaf']}..{win['last_leaf']}; DRIFT record {w['record_id']}"
    )
    if not w["judged"]:
        out.print("  too few rows to judge (below min_rows): measured, not judged")
    if w["features"]:
        _print_features(w)
    if w["metrics"]:
        out.print(_metrics_table(w["metrics"]))
    if w.get("fairness"):
        _print_fairness(w["fairness"])
    if w["breaches"]:
        out.print("breached thresholds:")
        for b in w["breaches"]:
            out.print(f"  {_breach_line(b)}")
    elif w["judged"]:
        out.print("no threshold breached")


def _breach_line(b: dict[str, Any]) -> str:
    value, threshold = _num(b.get("value"), ".3g"), _num(b.get("threshold"), "g")
    if b.get("rule") == "performance":
        return f"performance: live {b.get('metric')} fell by {value} >= {threshold}"
    if b.get("rule") == "fairness":
        sign = "<" if b.get("metric") == "demographic_parity_ratio" else ">"
        return f"fairness: {b.get('feature')} {b.get('metric')} {value} {sign} {threshold}"
    what = f"{b.get('feature')} " if b.get("feature") else ""
    rule = str(b.get("rule", "")).replace("_", " ")
    return f"{rule}: {what}{b.get('metric')} {value} >= {threshold}"


def _print_features(w: dict[str, Any]) -> None:
    out = console()
    table = Table(
        "feature", "PSI", "JS", "KS", "Wasserstein", "Cramér's V", "p (adj.)", "missing",
        "out of range", "",
    )  # fmt: skip
    for f in w["features"]:
        table.add_row(
            f["name"],
            _num(f["psi"]),
            _num(f["js"]),
            _num(f["ks"]),
            _num(f["wasserstein"]),
            _num(f["cramers_v"]),
            _num(f["p_adjusted"], ".2g"),
            _share(f["missing_share"]),
            _share(f["out_of_range_share"]),
            "[bold red]DRIFTED[/bold red]" if f["drifted"] else "",
        )
    out.print(table)
    prediction = w["prediction"]
    if prediction:
        shares = ", ".join(
            f"{label} {ref:.1%} -> {cur:.1%}"
            for label, ref, cur in zip(
                prediction["labels"], prediction["reference"], prediction["current"], strict=False
            )
        )
        out.print(
            f"predictions: PSI {_num(prediction['psi'])}, JS {_num(prediction['js'])}, "
            f"p {_num(prediction['chi2_p'], '.2g')} ({shares})"
        )
    if w["scores"]:
        s = w["scores"]
        out.print(
            f"scores: PSI {_num(s['psi'])}, KS {_num(s['ks'])}"
            + (" [bold red]DRIFTED[/bold red]" if s["drifted"] else "")
        )


def _print_fairness(fairness: dict[str, Any]) -> None:
    """Per sensitive attribute, its groups' live figures beside the deploy-time
    selection rates, then the attribute's summary against its gate."""
    out = console()
    outcomes = any("tests" in a for a in fairness.get("attributes", {}).values())
    columns = ["attribute", "group", "rows", "selection rate", "at deploy"]
    columns += ["accuracy", "TPR", "FPR"] if outcomes else []
    table = Table(
        *columns,
        title=f"fairness (favourable label {fairness.get('favourable_label')!r}, "
        f"min group size {fairness.get('min_group_size')})",
    )
    lines = []
    for name, a in (fairness.get("attributes") or {}).items():
        if not a.get("monitored"):
            lines.append(f"{name}: {a.get('reason')}")
            continue
        then = (a.get("deploy") or {}).get("groups") or {}
        for group, g in a.get("groups", {}).items():
            row = [name, group + (" (small)" if g.get("small") else ""), str(g.get("count"))]
            row += [_num(g.get("selection_rate")), _num(then.get(group, {}).get("selection_rate"))]
            if outcomes:
                row += [_num(g.get("accuracy")), _num(g.get("tpr")), _num(g.get("fpr"))]
            table.add_row(*row)
        deploy = a.get("deploy") or {}
        if "tests" in a:
            key, label = "equalized_odds_difference", "equalized odds difference"
            ps = [t.get("p_value") for t in a["tests"].values() if t.get("p_value") is not None]
            p = min(ps) if ps else None
        else:
            key, label, p = "demographic_parity_ratio", "demographic parity ratio", a.get("p_value")
        lines.append(
            f"{name}: {label} {_num(a.get(key))} ({_num(deploy.get(key))} at deploy), "
            f"p {_num(p, '.2g')}" + (" [bold red]BREACHED[/bold red]" if a.get("breached") else "")
        )
    out.print(table)
    for line in lines:
        out.print(line)


def _metrics_table(metrics: Any) -> Table:
    """Live metrics beside their deploy-time values, however the body spells them:
    {"f1": {"live": .8, "deploy": .9}} or {"live": {...}, "deploy": {...}}."""
    table = Table("metric", "live", "at deploy", title="live metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("live"), dict):
        live, ref = metrics["live"], metrics.get("deploy") or metrics.get("reference") or {}
        rows = [(name, live.get(name), ref.get(name)) for name in live]
    elif isinstance(metrics, dict):
        rows = []
        for name, value in metrics.items():
            if isinstance(value, dict):
                deploy = value.get("deploy", value.get("reference"))
                rows.append((name, value.get("live"), deploy))
            else:
                rows.append((name, value, None))
    else:
        rows = []
    for name, live_value, deploy_value in rows:
        table.add_row(str(name), _metric(live_value), _metric(deploy_value))
    return table


def _metric(value: Any) -> str:
    return _num(value) if isinstance(value, int | float) else ("-" if value is None else str(value))


@click.command()
@click.argument("model")
@click.option("--version", "version", default="", help="Only this model version.")
@click.option(
    "--since", type=Since(), help="Only windows evaluated since (7d, 12h, or an RFC 3339 time)."
)
@click.option(
    "--windows",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="How many of the latest evaluated windows (of each configured window).",
)
@output_option
@click.pass_context
def drift(
    ctx: click.Context,
    model: str,
    version: str,
    since: datetime | None,
    windows: int,
    output: str,
) -> int:
    """MODEL's latest evaluated window(s): per-feature drift, predictions, breaches.

    The monitor evaluates two kinds of window, each a DRIFT record: decisions
    (feature and prediction drift) and, once outcomes are recorded, outcomes
    (live metrics against the deploy-time ones). With [fairness] at deploy, both
    show per sensitive attribute that is a model input its groups' live figures
    beside the deploy-time ones (selection rates and demographic parity over
    decisions; accuracy, TPR, FPR and equalized odds over outcomes); an attribute
    the model does not take is "not monitored". A version may configure several
    decisions windows (say 500 rows and a rolling hour): --windows N shows the
    latest N of each kind and each window spec, newest first.
    """
    with monitor_session(ctx) as monitor:
        # Enough records that the latest N of every kind and spec are among them: a
        # short window records many for each of a long one's.
        fetch = min(1000, max(100, 8 * windows))
        found = monitor.drift(model, model_version=version, since=since, page_size=fetch)
    views = latest_windows(map(window_json, found), windows)
    if output == "json":
        emit_json(views)
        return EXIT_OK
    if not views:
        of = f"{model} {version}".strip()
        click.echo(
            f"no window of {of} has been evaluated yet"
            + (" in that time" if since is not None else "")
            + " (the monitor judges a window once it is full)"
        )
        return EXIT_OK
    for i, view in enumerate(views):
        if i:
            console().print()
        _print_window(view)
    return EXIT_OK


# -- alerts --------------------------------------------------------------------------


def alert_json(a: Alert) -> dict[str, Any]:
    acknowledged = a.state == monitor_pb2.ALERT_STATE_ACKNOWLEDGED
    return {
        "record_id": a.record_id,
        "model": a.model_name,
        "version": a.model_version,
        "state": AlertState.Name(a.state).removeprefix("ALERT_STATE_").lower(),
        "rule": a.rule,
        "metric": a.metric,
        "feature": a.feature or None,
        "value": a.value,
        "threshold": a.threshold,
        "summary": a.summary,
        "raised_at": rfc3339(a.raised_at),
        "acknowledged_by": a.acknowledged_by or None,
        "acknowledged_at": rfc3339(a.acknowledged_at) if acknowledged else None,
        "note": a.note if acknowledged else None,
        "body": json.loads(a.body_json) if a.body_json else {},
    }


@click.group()
def alerts() -> None:
    """Alerts the monitor raised, and their acknowledgements."""


@alerts.command("list")
@click.option("--model", default="", help="Only alerts of this model.")
@click.option(
    "--state",
    type=click.Choice(sorted(_STATES)),
    default="firing",
    show_default=True,
    help="Only alerts in this state.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most N alerts (newest first).")
@output_option
@click.pass_context
def list_alerts(ctx: click.Context, model: str, state: str, limit: int | None, output: str) -> int:
    """Alerts, newest first."""
    page_size = min(limit or 100, 1000)
    with monitor_session(ctx) as monitor:
        found = [
            alert_json(a)
            for a in itertools.islice(
                monitor.alerts(model_name=model, state=_STATES[state], page_size=page_size),
                limit,
            )
        ]
    if output == "json":
        emit_json(found)
        return EXIT_OK
    if not found:
        which = "" if state == "all" else f"{state} "
        click.echo(f"no {which}alerts" + (f" for {model}" if model else ""))
        return EXIT_OK
    table = Table("raised", "state", "model", "version", "summary", "alert id", "acknowledged by")
    for a in found:
        table.add_row(
            a["raised_at"],
            "[bold red]FIRING[/bold red]" if a["state"] == "firing" else "ACKNOWLEDGED",
            a["model"],
            a["version"],
            a["summary"],
            a["record_id"],
            a["acknowledged_by"] or "-",
        )
    console().print(table)
    return EXIT_OK


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--note", default="", help="Why, or what was done (up to 1000 characters).")
@output_option
@click.pass_context
def ack(ctx: click.Context, alert_id: str, note: str, output: str) -> int:
    """Acknowledge ALERT_ID; recorded in the ledger as an ALERT record by you."""
    with monitor_session(ctx) as monitor:
        done = monitor.acknowledge(alert_id, note)
    if output == "json":
        emit_json(
            {
                "alert": alert_json(done.alert),
                "acknowledgement_record_id": done.acknowledgement_record_id,
                "already_acknowledged": done.already_acknowledged,
            }
        )
        return EXIT_OK
    a = done.alert
    if done.already_acknowledged:
        click.echo(
            f"alert {a.record_id} was already acknowledged by {a.acknowledged_by} at "
            f"{rfc3339(a.acknowledged_at)}; acknowledgement record "
            f"{done.acknowledgement_record_id}"
        )
    else:
        click.echo(
            f"acknowledged alert {a.record_id} ({a.summary}); acknowledgement record "
            f"{done.acknowledgement_record_id}"
        )
    return EXIT_OK
