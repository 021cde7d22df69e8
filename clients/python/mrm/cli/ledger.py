"""`mrmctl ledger`: checkpoints and proofs, each verified here before it is shown."""

from __future__ import annotations

import click
from rich.table import Table

from mrm.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, CliError
from mrm.cli.output import console, emit_json, output_option
from mrm.cli.params import RecordId
from mrm.cli.session import LedgerSession, ledger_session
from mrm.client.trust import TrustedCheckpoint, open_checkpoint
from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import EMPTY_ROOT, ProofError, leaf_hash, verify_consistency, verify_inclusion
from mrm.tlog.proofs import ConsistencyProof, InclusionProof


@click.group()
def ledger() -> None:
    """The tamper-evident audit log: checkpoints, proofs, records and audits."""


def fields(rows: list[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value)
    return grid


@ledger.command()
@click.option("--refresh", is_flag=True, help="Ask the ledger to sign a checkpoint of every leaf.")
@output_option
@click.pass_context
def checkpoint(ctx: click.Context, refresh: bool, output: str) -> int:
    """Show the latest signed checkpoint, after checking it against the last one seen."""
    with ledger_session(ctx) as s:
        cp = s.trusted(refresh=refresh)
    if output == "json":
        emit_json(
            {
                "origin": cp.origin,
                "tree_size": cp.size,
                "root_hash": cp.root_hash.hex(),
                "signed_at": s.signed_at,
                "note": cp.note,
                "verifier_key": cp.vkey,
            }
        )
        return EXIT_OK
    out = console()
    out.print(
        fields(
            [
                ("origin", cp.origin),
                ("tree size", str(cp.size)),
                ("root hash", cp.root_hash.hex()),
                ("signed at", s.signed_at),
                ("verifier key", cp.vkey),
            ]
        )
    )
    out.print()
    out.print(cp.note, markup=False, end="")
    return EXIT_OK


def _bound_root(s: LedgerSession, latest: TrustedCheckpoint, size: int, claimed: bytes) -> bytes:
    """A root the server claims for `size`, accepted once proven a prefix of the latest."""
    path = s.client.consistency_proof(size, latest.size).consistency_path
    try:
        verify_consistency(size, latest.size, path, claimed, latest.root_hash)
    except ProofError as e:
        raise CliError(
            f"the ledger's root for {size} leaves is not a prefix of the signed one: {e}",
            EXIT_CHECK_FAILED,
        ) from None
    return claimed


def _signed_root(s: LedgerSession, latest: TrustedCheckpoint, size: int, note: str) -> bytes:
    """The root of a signed checkpoint, checked to be a prefix of the latest one."""
    if size == latest.size:
        return latest.root_hash
    note_size, root = open_checkpoint(note, latest.verifier, latest.origin)
    if note_size != size:
        raise CliError(
            f"the ledger sent a checkpoint of {note_size} leaves for size {size}", EXIT_CHECK_FAILED
        )
    path = s.client.consistency_proof(size, latest.size).consistency_path
    try:
        verify_consistency(size, latest.size, path, root, latest.root_hash)
    except ProofError as e:
        raise CliError(
            f"the checkpoint of {size} leaves is not a prefix of the latest one: {e}",
            EXIT_CHECK_FAILED,
        ) from None
    return root


@ledger.command()
@click.argument("record_id", type=RecordId())
@click.option(
    "--tree-size",
    type=click.IntRange(min=1),
    help="Prove against the signed checkpoint of exactly this size (default: a fresh one).",
)
@output_option
@click.pass_context
def proof(ctx: click.Context, record_id: str, tree_size: int | None, output: str) -> int:
    """Prove that a record is in the log; the proof is verified here first.

    With --output json it prints a proof file that `mrmctl ledger verify-proof`
    (or any RFC 6962 verifier) checks offline.
    """
    with ledger_session(ctx) as s:
        latest = s.trusted(refresh=True)
        size = tree_size or latest.size
        if size > latest.size:
            raise CliError(
                f"--tree-size {size} is beyond the latest signed checkpoint ({latest.size} leaves)"
            )
        resp = s.client.inclusion_proof(record_id=record_id, tree_size=size)
        note, root = latest.note, latest.root_hash
        if size != latest.size:
            note = resp.checkpoint.note
            if not note:
                raise CliError(
                    f"the ledger has no signed checkpoint of exactly {size} leaves; "
                    "omit --tree-size to prove against the latest one"
                )
            root = _signed_root(s, latest, size, note)
    record = resp.record
    # The server's answer is checked piece by piece: the record it returns must
    # be the one asked for and must hash to the leaf the path starts from.
    if record.record_id != record_id or resp.tree_size != size:
        raise CliError("the ledger answered for a different record or tree size", EXIT_CHECK_FAILED)
    if leaf_hash(leaf_bytes_from_proto(record)) != resp.leaf_hash:
        raise CliError(
            f"record {record_id} does not hash to the leaf the ledger proves", EXIT_CHECK_FAILED
        )
    try:
        verify_inclusion(resp.leaf_hash, resp.leaf_index, size, resp.inclusion_path, root)
    except ProofError as e:
        raise CliError(f"inclusion proof does not verify: {e}", EXIT_CHECK_FAILED) from None
    doc = InclusionProof(
        origin=latest.origin,
        leaf_index=resp.leaf_index,
        tree_size=size,
        leaf_hash=resp.leaf_hash,
        inclusion_path=tuple(resp.inclusion_path),
        root_hash=root,
        checkpoint=note,
    )
    if output == "json":
        emit_json(doc.to_json())
        return EXIT_OK
    out = console()
    out.print(f"[green]✓[/] record {record_id} is leaf {resp.leaf_index} of the {size}-leaf tree")
    out.print(
        fields(
            [
                ("origin", latest.origin),
                ("leaf hash", resp.leaf_hash.hex()),
                ("root hash", root.hex()),
                ("path", "\n".join(h.hex() for h in resp.inclusion_path) or "(empty)"),
            ]
        )
    )
    out.print("Save it with --output json > proof.json; check it offline with", markup=False)
    out.print("  mrmctl ledger verify-proof proof.json --vkey " + latest.vkey, markup=False)
    return EXIT_OK


@ledger.command()
@click.argument("old_size", type=click.IntRange(min=0))
@click.argument("new_size", type=click.IntRange(min=0), required=False)
@output_option
@click.pass_context
def consistency(ctx: click.Context, old_size: int, new_size: int | None, output: str) -> int:
    """Prove that the log of NEW_SIZE leaves (default: latest) extends that of OLD_SIZE."""
    with ledger_session(ctx) as s:
        latest = s.trusted()
        new = latest.size if new_size is None else new_size
        if old_size > new:
            raise CliError(f"OLD_SIZE {old_size} is larger than NEW_SIZE {new}")
        if new > latest.size:
            raise CliError(
                f"NEW_SIZE {new} is beyond the latest signed checkpoint ({latest.size} leaves)"
            )
        resp = s.client.consistency_proof(old_size, new)
        notes = {latest.size: latest.note}
        for cp in s.client.list_checkpoints():
            if cp.tree_size in (old_size, new):
                notes.setdefault(cp.tree_size, cp.note)
        roots = {n: _signed_root(s, latest, n, notes[n]) for n in {old_size, new} if n in notes}
        if new not in roots:
            # No checkpoint of exactly NEW_SIZE: bind the server's root for it to
            # the latest signed one, so nothing below rests on the server's word.
            roots[new] = _bound_root(s, latest, new, resp.new_root)
    # The old root, unsigned or not, is then bound by the proof to the new one.
    old_root = EMPTY_ROOT if old_size == 0 else roots.get(old_size, resp.old_root)
    new_root = roots[new]
    try:
        verify_consistency(old_size, new, resp.consistency_path, old_root, new_root)
    except ProofError as e:
        raise CliError(f"consistency proof does not verify: {e}", EXIT_CHECK_FAILED) from None
    doc = ConsistencyProof(
        origin=latest.origin,
        old_size=old_size,
        new_size=new,
        old_root=old_root,
        new_root=new_root,
        consistency_path=tuple(resp.consistency_path),
        old_checkpoint=notes.get(old_size),
        new_checkpoint=notes.get(new),
    )
    if output == "json":
        emit_json(doc.to_json())
        return EXIT_OK
    out = console()
    out.print(f"[green]✓[/] the {new}-leaf tree extends the {old_size}-leaf tree")
    out.print(
        fields(
            [
                ("origin", latest.origin),
                ("old root", old_root.hex() + ("" if old_size in notes else " (proven)")),
                ("new root", new_root.hex() + ("" if new in notes else " (proven by the latest)")),
                ("path", "\n".join(h.hex() for h in resp.consistency_path) or "(empty)"),
            ]
        )
    )
    return EXIT_OK
