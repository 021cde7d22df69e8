"""The evidence bundle's layout, its exact serializations and a bounded zip reader.

Every file in a bundle is either a ledger leaf (the record's canonical bytes,
exactly what the log hashed), a proof or signed note from the ledger, or a
document derived from those. Each has one exact serialization, written here
and re-created by the verifier, so a byte changed anywhere, even whitespace,
is a difference the verifier can name.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

FORMAT = "mrm.evidence.v1"
MANIFEST = "manifest.json"
MODEL_CARD = "model_card.json"
SUMMARY = "summary.json"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
DERIVED = (MODEL_CARD, SUMMARY, REPORT_HTML, REPORT_PDF)

# Limits on what the verifier reads: a bundle is evidence about one model, and
# a hostile one must not exhaust memory by declaring (or inflating to) huge members.
MAX_MEMBERS = 200_000
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
# A record takes two members (leaf and proof); the rest is checkpoints and documents.
MAX_RECORDS = (MAX_MEMBERS - 10_000) // 2

_RECORD = re.compile(r"records/([0-9]{12})\.json")
_PROOF = re.compile(r"proofs/([0-9]{12})\.json")
_NOTE = re.compile(r"checkpoints/([0-9]{12})\.note")
_CONSISTENCY = re.compile(r"checkpoints/([0-9]{12})\.consistency\.json")


def record_path(leaf_index: int) -> str:
    return f"records/{leaf_index:012d}.json"


def proof_path(leaf_index: int) -> str:
    return f"proofs/{leaf_index:012d}.json"


def note_path(tree_size: int) -> str:
    return f"checkpoints/{tree_size:012d}.note"


def consistency_path(tree_size: int) -> str:
    return f"checkpoints/{tree_size:012d}.consistency.json"


def classify(name: str) -> tuple[str, int] | None:
    """("record" | "proof" | "note" | "consistency", number) for a ledger file's path."""
    for kind, pattern in (
        ("record", _RECORD),
        ("proof", _PROOF),
        ("note", _NOTE),
        ("consistency", _CONSISTENCY),
    ):
        if m := pattern.fullmatch(name):
            return kind, int(m.group(1))
    return None


def dump_json(value: Any) -> bytes:
    """The one serialization of every JSON document in a bundle except the records."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class BundleUnreadable(Exception):
    """The input is not a readable evidence bundle at all (exit 2, not a verdict)."""


@dataclass
class Contents:
    """The members of a bundle: their bytes, and per member why it could not be read."""

    files: dict[str, bytes]
    unreadable: dict[str, str]


def read_bundle(path: str) -> Contents:
    """Read every member, refusing a bundle whose declared sizes or names are unsafe.

    A member whose bytes fail the zip's CRC or do not inflate is named in
    `unreadable` (the bundle was altered), not raised: the verdict names it.
    """
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleUnreadable(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BundleUnreadable(f"{path}: is a directory, not a zip file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise BundleUnreadable(f"{path}: not a zip file ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BundleUnreadable(f"{path}: {len(infos)} members, more than {MAX_MEMBERS}")
        total = 0
        seen: set[str] = set()
        for info in infos:
            name = info.filename
            if name in seen:
                raise BundleUnreadable(f"{path}: member {name!r} appears twice")
            seen.add(name)
            if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                raise BundleUnreadable(f"{path}: member {name!r} has an unsafe path")
            if info.file_size > MAX_MEMBER_BYTES:
                raise BundleUnreadable(
                    f"{path}: member {name!r} declares {info.file_size} bytes, more than the "
                    f"{MAX_MEMBER_BYTES} a bundle member may have; refused"
                )
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise BundleUnreadable(
                f"{path}: members declare {total} bytes in all, "
                f"more than {MAX_TOTAL_BYTES}; refused"
            )
        files: dict[str, bytes] = {}
        unreadable: dict[str, str] = {}
        for info in infos:
            if info.is_dir():
                continue
            try:
                with zf.open(info) as f:
                    # Never trust the declared size: read at most one byte past it.
                    data = f.read(info.file_size + 1)
                if len(data) != info.file_size:
                    unreadable[info.filename] = "its size is not what the zip declares"
                else:
                    files[info.filename] = data
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
                unreadable[info.filename] = f"cannot be read from the zip ({e}): altered or damaged"
            except NotImplementedError as e:
                unreadable[info.filename] = f"cannot be read from the zip ({e})"
    return Contents(files, unreadable)


def write_bundle(path: str, files: dict[str, bytes]) -> None:
    """Write the members in a stable order with a fixed timestamp."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
