"""`mrmctl evidence MODEL -o bundle.zip` and `mrmctl evidence verify bundle.zip --vkey …`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mrm.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, CliError
from mrm.cli.output import console, emit_json
from mrm.cli.session import ledger_session, registry_session
from mrm.evidence.build import EvidenceError, build_bundle
from mrm.evidence.bundle import BundleUnreadable
from mrm.evidence.verify import verify_bundle
from mrm.tlog.note import NoteError, parse_vkey


class _EvidenceGroup(click.Group):
    """`evidence MODEL …` builds; `evidence verify …` verifies. A first word that is not
    a subcommand is the model (a model named "verify": `evidence build verify …`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_EvidenceGroup)
def evidence() -> None:
    """Evidence bundles an auditor checks offline (docs/evidence.md).

    \b
    mrmctl evidence MODEL [--version V] [--since DATE] -o bundle.zip
    mrmctl evidence verify bundle.zip --vkey VKEY [--output json]
    """


@evidence.command("build")
@click.argument("model")
@click.option("--version", "version", help="Only this version's records (default: all).")
@click.option(
    "--since",
    type=click.DateTime(
        [
            "%Y-%m-%d",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M:%S%z",
            "%Y-%m-%dT%H:%M:%S.%f",
            "%Y-%m-%dT%H:%M:%S.%f%z",
        ]
    ),
    help="Only decisions (PREDICTION, EXPLANATION, OUTCOME) recorded from then on (UTC).",
)
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the zip.",
)
@click.pass_context
def build(
    ctx: click.Context, model: str, version: str | None, since: datetime | None, out: Path
) -> int:
    """Write one zip: every record of MODEL with its inclusion proof, the signed
    checkpoints with consistency proofs, the model card, summaries, HTML and PDF."""
    if not out.parent.is_dir():
        raise CliError(f"-o {out}: directory {out.parent} does not exist")
    with ledger_session(ctx) as s, registry_session(ctx) as registry:
        trusted = s.trusted(refresh=True)
        try:
            built = build_bundle(
                s.client,
                registry,
                trusted,
                str(out),
                model=model,
                version=version,
                since=since,
                progress=lambda line: click.echo(line, err=True),
            )
        except EvidenceError as e:
            raise CliError(str(e), e.exit_code) from None
    screen = console()
    screen.print("[green]✓[/] ", end="")
    screen.print(
        f"wrote {built.path}: {built.records} records, {built.checkpoints} signed "
        f"checkpoints, log {built.origin} at tree size {built.tree_size}",
        markup=False,
    )
    return EXIT_OK


@evidence.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--vkey",
    "vkeys",
    multiple=True,
    required=True,
    envvar="MRM_LEDGER_VKEY",
    help="The log's verifier key name+keyid+base64 (repeatable; env MRM_LEDGER_VKEY).",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts (on stdout)",
)
def verify(bundle: Path, vkeys: tuple[str, ...], output: str) -> int:
    """Check a bundle offline with the log's key: no server, network or database.

    Exit 0 valid, 1 invalid (each problem names its file), 2 unreadable input.
    """
    verifiers = []
    for vkey in vkeys:
        try:
            verifiers.append(parse_vkey(vkey))
        except NoteError as e:
            raise CliError(f"--vkey {vkey!r}: {e}", EXIT_USAGE) from None
    try:
        verdict = verify_bundle(str(bundle), verifiers)
    except BundleUnreadable as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if output == "json":
        emit_json(verdict.to_json())
    else:
        _print(verdict.to_json())
    return EXIT_OK if verdict.valid else EXIT_CHECK_FAILED


def _print(v: dict[str, Any]) -> None:
    out = console()
    if v["valid"]:
        out.print("[green]✓ valid[/] ", end="")
        out.print(
            f"{v['bundle']}: {v['records']} records in log {v['origin']} at tree size "
            f"{v['tree_size']}, {v['checkpoints']} signed checkpoints consistent, model card, "
            "summaries, HTML, PDF and manifest re-derived",
            markup=False,
        )
        return
    out.print("[red]✗ INVALID[/] ", end="")
    out.print(f"{v['bundle']}: {len(v['problems'])} problem(s)", markup=False)
    for p in v["problems"]:
        out.print(f"  {p['file']}: {p['reason']}", markup=False)
