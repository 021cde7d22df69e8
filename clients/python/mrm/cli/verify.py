"""`mrmctl ledger verify-proof`, `verify-note` (offline) and `verify` (the full audit)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mrm.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, CliError
from mrm.cli.ledger import ledger
from mrm.cli.output import console, emit_json, err_console, output_option
from mrm.cli.session import ledger_session
from mrm.client.audit import AuditReport, BadLeaf, audit_ledger
from mrm.client.errors import DataLoss
from mrm.client.trust import TrustConfigError, TrustError, TrustStore
from mrm.tlog.note import NoteError, Verifier, open_note, parse_vkey
from mrm.tlog.proofs import ProofFileError, load_proof_file, verify_proof_file

_VKEY_HELP = "Verifier key name+keyid+base64 (repeatable; default: $MRM_LEDGER_VKEY)."
_MAX_PROBLEMS_SHOWN = 20


def _verifiers(vkeys: Sequence[str]) -> list[Verifier]:
    out = []
    for vkey in vkeys:
        try:
            out.append(parse_vkey(vkey))
        except NoteError as e:
            raise CliError(f"--vkey {vkey!r}: {e}") from None
    return out


@ledger.command("verify-proof")
@click.argument("files", nargs=-1, required=True)
@click.option("--vkey", "vkeys", multiple=True, envvar="MRM_LEDGER_VKEY", help=_VKEY_HELP)
@output_option
def verify_proof(files: tuple[str, ...], vkeys: tuple[str, ...], output: str) -> int:
    """Verify inclusion and consistency proof files offline, with no server.

    With --vkey, every checkpoint in a file must be signed by one of the keys.
    Without it, the key mrmctl already trusts for the file's log (if any) is
    used; with no key at all only the proof's arithmetic is checked, and the
    reason says so. A file that cannot be read or is not a proof file is
    reported as invalid with the reason. Exit 0 if all are valid, else 1.
    """
    verifiers = _verifiers(vkeys)
    results = [verify_proof_file(f, verifiers or _trusted_key_for(f)) for f in files]
    if output == "json":
        emit_json([asdict(r) for r in results])
    else:
        out = console()
        for r in results:
            mark = "[green]✓ valid[/]" if r.valid else "[red]✗ INVALID[/]"
            out.print(f"{mark} {r.file}: ", end="")
            out.print(r.reason, markup=False)
    return EXIT_OK if all(r.valid for r in results) else EXIT_CHECK_FAILED


def _trusted_key_for(file: str) -> list[Verifier] | None:
    """The trust store's key for the log a proof file names, when mrmctl knows that log."""
    try:
        origin = load_proof_file(file).origin
        key = TrustStore.from_env(announce=lambda _line: None).verifier(origin)
    except (OSError, ProofFileError, TrustConfigError, TrustError):
        return None  # verify_proof_file reports an unreadable file itself
    return [key] if key is not None else None


@ledger.command("verify-note")
@click.argument("file")
@click.option(
    "--vkey", "vkeys", multiple=True, required=True, envvar="MRM_LEDGER_VKEY", help=_VKEY_HELP
)
@output_option
def verify_note(file: str, vkeys: tuple[str, ...], output: str) -> int:
    """Verify a C2SP signed note (such as a checkpoint) with the given keys.

    Signatures by unknown keys are ignored; a known key's bad signature
    rejects the note, and at least one known key must have signed it.
    """
    verifiers = _verifiers(vkeys)
    try:
        data = Path(file).read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {file}: {e.strerror}") from None
    try:
        note = open_note(data, verifiers)
        valid, reason, signers = True, f"signed by {', '.join(note.verified)}", note.verified
    except NoteError as e:
        valid, reason, signers = False, str(e), ()
    if output == "json":
        emit_json({"file": file, "valid": valid, "reason": reason, "verified_by": list(signers)})
    elif valid:
        console().print(f"[green]✓ valid[/] {file}: {reason}")
    else:
        console().print(f"[red]✗ INVALID[/] {file}: ", end="")
        console().print(reason, markup=False)
    return EXIT_OK if valid else EXIT_CHECK_FAILED


@ledger.command()
@output_option
@click.pass_context
def verify(ctx: click.Context, output: str) -> int:
    """Audit the whole log: re-derive every leaf and check every signed checkpoint.

    Names the first leaf (index and record id) that disagrees. Exit 0 if the
    log is intact, 1 if not.
    """
    with ledger_session(ctx) as s:
        # Have every leaf covered by a signed checkpoint first. The ledger checks
        # each leaf it signs for the first time (content, seal) and refuses a
        # leaf written around it; that refusal is part of the audit's verdict.
        refusal: DataLoss | None = None
        try:
            s.client.checkpoint(refresh=True)
        except DataLoss as e:
            refusal = e
        trusted = s.trusted()
        if output == "text" and sys.stderr.isatty():
            with Progress(
                TextColumn("verifying leaves"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console(),
                transient=True,
            ) as bar:
                task = bar.add_task("leaves", total=trusted.size or None)
                report = audit_ledger(
                    s.client, trusted, on_progress=lambda n: bar.update(task, completed=n)
                )
        else:
            report = audit_ledger(s.client, trusted)
    if refusal is not None:
        _add_refusal(report, refusal)
    if output == "json":
        emit_json(report.to_json())
    else:
        _print_report(report, trusted.origin)
    return EXIT_OK if report.valid else EXIT_CHECK_FAILED


def _add_refusal(report: AuditReport, refusal: DataLoss) -> None:
    reason = f"the ledger refuses to sign it: {refusal.message}"
    index = refusal.info.get("leaf_index", "")
    if index.isdigit():
        report.bad_leaf(BadLeaf(int(index), refusal.info.get("record_id") or None, reason))
    else:
        report.problems.append(f"the ledger refuses to sign a checkpoint: {refusal.message}")


def _print_report(report: AuditReport, origin: str) -> None:
    out = console()
    if report.valid:
        out.print(
            f"[green]✓[/] log {origin} is intact: {report.checked_leaves} leaves re-derived, "
            f"{report.checkpoints_checked} signed checkpoints match"
        )
        return
    out.print(f"[red]✗ log {origin} FAILED the audit[/]")
    bad = report.first_bad_leaf
    if bad is not None:
        who = f" (record {bad.record_id})" if bad.record_id else ""
        out.print(f"first bad leaf: {bad.leaf_index}{who}: ", end="")
        out.print(bad.reason, markup=False)
    for problem in report.problems[:_MAX_PROBLEMS_SHOWN]:
        out.print(f"  - {problem}", markup=False)
    hidden = len(report.problems) - _MAX_PROBLEMS_SHOWN
    if hidden > 0:
        out.print(f"  … and {hidden} more (see --output json)")
    out.print(f"checked {report.checked_leaves} leaves, {report.checkpoints_checked} checkpoints")
