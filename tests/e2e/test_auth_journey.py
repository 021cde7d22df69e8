"""Credentials as a user meets them: `mrm up` makes them, `mrm auth` issues and revokes
them (each an ACCESS record), `mrmctl` says in one line which credential failed,
and not one secret of the whole run shows up in any log, output or ledger record."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.core.auth import tokens
from tests.support.mrm_up import mrm_env

MRMCTL = str(Path(sys.executable).with_name("mrmctl"))
MRM = str(Path(sys.executable).with_name("mrm"))


@dataclass
class Run:
    """One `mrm up` and everything said during it (scanned for secrets at the end)."""

    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[str]
    said: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)

    def run(self, tool: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [tool, *args],
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # `mrm auth issue` prints the new token on stdout, once, by design: that output
        # is the hand-over, not a log. Everything else anyone sees is scanned.
        handing_over = tool == MRM and args[:2] == ("auth", "issue")
        self.said += [done.stderr] if handing_over else [done.stdout, done.stderr]
        return done

    def mrm(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(MRM, *args, **env)

    def mrmctl(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(MRMCTL, *args, **env)

    def admin(self) -> ClientAuth:
        return ClientAuth((self.home / "admin.token").read_text().strip(), None, "admin")

    def access_records(self) -> list[dict[str, object]]:
        with LedgerClient(self.env["MRM_LEDGER_ADDR"], auth=self.admin()) as ledger:
            return [
                json.loads(r.body_json) | {"actor": r.actor} for r in ledger.query(kind="ACCESS")
            ]


def _one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def _wait(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture(scope="module")
def mrm_up_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("auth") / "home"
    env = mrm_env(home, MRM_LOG_LEVEL="DEBUG", MRM_AUTH_RECONCILE_INTERVAL="1")
    env["MRM_CONFIG_DIR"] = str(home.parent / "mrmctl")
    home.mkdir(parents=True)
    # every span the run makes is printed too (the console exporter), and scanned
    env |= {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"}
    out_file, err_file = home.parent / "server.stdout", home.parent / "server.stderr"
    with out_file.open("w") as stdout, err_file.open("w") as stderr:
        proc = subprocess.Popen([MRM, "up"], env=env, stdout=stdout, stderr=stderr, text=True)
        deadline = time.monotonic() + 120
        while "mrm: ready" not in out_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("mrm up did not start: " + out_file.read_text() + err_file.read_text())
            time.sleep(0.2)
        run = Run(home, env, proc, [])
        run.logs = (out_file, err_file)  # type: ignore[attr-defined]
        yield run
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def test_mrm_up_makes_the_local_credentials_private(mrm_up_stack: Run) -> None:
    for name in ("admin", "registry", "explain", "proxy"):
        path = mrm_up_stack.home / f"{name}.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        token = path.read_text().strip()
        assert token.startswith("mrm_")
        mrm_up_stack.secrets[f"{name} token"] = token
    assert stat.S_IMODE((mrm_up_stack.home / "tokens.json").stat().st_mode) == 0o600
    assert str(mrm_up_stack.home / "admin.token") in mrm_up_stack.logs[0].read_text()  # type: ignore[attr-defined]
    for path in mrm_up_stack.home.glob("*.key"):
        mrm_up_stack.secrets[path.name] = path.read_text().strip()
    # mrmctl and mrm status need no step by hand: they find the admin token
    who = mrm_up_stack.mrmctl("whoami", "--output", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["principal"] == "local-admin"
    assert mrm_up_stack.mrm("status").returncode == 0
    # the local credentials are recorded in the ledger, by MRM itself
    _wait(lambda: len(mrm_up_stack.access_records()) >= 4, "the bootstrap tokens are recorded")
    issued = {r["principal"] for r in mrm_up_stack.access_records() if r["action"] == "issued"}
    assert {"local-admin", "mrm-registry", "mrm-explain", "mrm-proxy"} <= issued


def test_issue_then_revoke_is_recorded_and_takes_effect(mrm_up_stack: Run) -> None:
    done = mrm_up_stack.mrm(
        "auth", "issue", "--principal", "devin@example.com", "--role", "deployer",
        "--model", "credit-*", "--output", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    token = doc["token"]
    mrm_up_stack.secrets["devin's token"] = token
    who = mrm_up_stack.mrmctl("whoami", "--output", "json", MRM_TOKEN=token)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["roles"] == ["deployer"]
    [issued] = [r for r in mrm_up_stack.access_records() if r.get("token_id") == doc["token_id"]]
    assert issued["action"] == "issued"
    assert issued["by"] == "local-admin"
    assert issued["actor"] == "local-admin"
    listed = mrm_up_stack.mrm("auth", "list")
    assert doc["token_id"] in listed.stdout
    assert token not in listed.stdout

    revoked = mrm_up_stack.mrm("auth", "revoke", "devin@example.com")
    assert revoked.returncode == 0, revoked.stderr
    _wait(
        lambda: mrm_up_stack.mrmctl("whoami", MRM_TOKEN=token).returncode == 4,
        "a revoked token stops working within a second or two",
        timeout=5,
    )
    line = _one_line(mrm_up_stack.mrmctl("whoami", MRM_TOKEN=token), 4)
    assert "revoked" in line
    assert doc["token_id"] in line
    actions = [
        r["action"] for r in mrm_up_stack.access_records() if r.get("token_id") == doc["token_id"]
    ]
    assert actions == ["issued", "revoked"]


def test_each_bad_credential_is_one_line_with_its_own_exit_code(
    mrm_up_stack: Run, tmp_path: Path
) -> None:
    wrong = _one_line(mrm_up_stack.mrmctl("models", "list", MRM_TOKEN=tokens.new_token()), 4)
    assert "not one this server issued" in wrong
    garbage = _one_line(mrm_up_stack.mrmctl("models", "list", MRM_TOKEN="hunter2"), 4)
    assert "neither an MRM token" in garbage
    missing = _one_line(
        mrm_up_stack.mrmctl("--token-file", str(tmp_path / "nope"), "models", "list"), 4
    )
    assert "nope" in missing
    expired = mrm_up_stack.mrm(
        "auth", "issue", "--principal", "late@example.com", "--role", "auditor", "--output", "json"
    )
    late = json.loads(expired.stdout)
    mrm_up_stack.secrets["late token"] = late["token"]
    with tokens.editing(mrm_up_stack.home / "tokens.json") as entries:
        entries[:] = [
            tokens.TokenEntry(**{**e.__dict__, "expires_at": "2026-01-01T00:00:00Z"})
            if e.id == late["token_id"]
            else e
            for e in entries
        ]
    _wait(
        lambda: mrm_up_stack.mrmctl("models", "list", MRM_TOKEN=late["token"]).returncode == 4,
        "an expired token is refused",
        timeout=5,
    )
    assert "expired" in _one_line(mrm_up_stack.mrmctl("models", "list", MRM_TOKEN=late["token"]), 4)
    # forbidden (exit 5): a valid auditor cannot promote
    auditor = json.loads(
        mrm_up_stack.mrm(
            "auth", "issue", "--principal", "audit@example.com", "--role", "auditor",
            "--output", "json",
        ).stdout
    )  # fmt: skip
    mrm_up_stack.secrets["auditor token"] = auditor["token"]
    forbidden = mrm_up_stack.mrmctl(
        "promote", "credit-risk", "1.0.0", "--stage", "staging", MRM_TOKEN=auditor["token"]
    )
    line = _one_line(forbidden, 5)
    assert "audit@example.com" in line
    assert "PromoteVersion" in line


def test_a_hand_edit_of_the_tokens_file_is_recorded_by_the_ledger(mrm_up_stack: Run) -> None:
    with tokens.editing(mrm_up_stack.home / "tokens.json") as entries:
        token, entry = tokens.issue(
            entries, "ops@example.com", ("auditor",), issued_by="vi /etc/mrm/tokens.json"
        )
        # an edit made a minute ago, past the grace left to `mrm auth`
        entries[-1] = tokens.TokenEntry(**{**entry.__dict__, "issued_at": "2026-01-01T00:00:00Z"})
    mrm_up_stack.secrets["hand-made token"] = token
    _wait(
        lambda: any(r.get("principal") == "ops@example.com" for r in mrm_up_stack.access_records()),
        "the ledger records a credential nobody recorded",
    )
    [record] = [r for r in mrm_up_stack.access_records() if r.get("principal") == "ops@example.com"]
    assert record["by"] == "vi /etc/mrm/tokens.json"
    assert record["actor"] == "system:tokens-file"


def test_a_browser_signs_in_with_a_token_and_is_signed_out_by_its_revocation(
    mrm_up_stack: Run,
) -> None:
    base = f"http://{mrm_up_stack.env['MRM_HTTP_ADDR']}"
    report = f"{base}/reports/01a2495b-254a-71d1-8e45-279cf4160000"
    plain = urllib3.PoolManager(headers={"Accept": "text/html"})  # as a browser asks
    first = plain.request("GET", report, redirect=False)
    assert first.status in (302, 303)
    assert first.headers["Location"].startswith("/login")
    wrong = plain.request("POST", f"{base}/login", fields={"token": "mrm_nope", "next": "/"},
                          encode_multipart=False, redirect=False)  # fmt: skip
    assert wrong.status == 401
    assert b"not one this server issued" in wrong.data
    issued = json.loads(
        mrm_up_stack.mrm("auth", "issue", "--principal", "legal@example.com", "--role", "auditor",
               "--output", "json").stdout
    )  # fmt: skip
    mrm_up_stack.secrets["legal's token"] = issued["token"]
    time.sleep(1.2)
    signed = plain.request(
        "POST", f"{base}/login", fields={"token": issued["token"], "next": "/reports/x"},
        encode_multipart=False, redirect=False,
    )  # fmt: skip
    assert signed.status == 303
    assert signed.headers["Location"] == "/reports/x"
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    session = cookie.split(";", 1)[0]
    mrm_up_stack.secrets["legal's session cookie"] = session.split("=", 1)[1]
    inside = plain.request(
        "GET", report, headers={"Cookie": session, "Accept": "text/html"}, redirect=False
    )
    assert inside.status == 404  # signed in: the report of no such decision
    assert mrm_up_stack.mrm("auth", "revoke", issued["token_id"]).returncode == 0
    _wait(
        lambda: (
            plain.request(
                "GET", report, headers={"Cookie": session, "Accept": "text/html"}, redirect=False
            ).status
            in (302, 303)
        ),
        "a revoked token's browser session ends",
        timeout=5,
    )


def test_no_secret_appears_in_any_log_output_or_record(mrm_up_stack: Run) -> None:
    # the tests above ran and collected every token, key and secret of the run
    assert {
        "ledger.key",
        "subject.key",
        "session.key",
        "admin token",
    } <= mrm_up_stack.secrets.keys()
    assert len(mrm_up_stack.secrets) >= 13, sorted(mrm_up_stack.secrets)
    with LedgerClient(mrm_up_stack.env["MRM_LEDGER_ADDR"], auth=mrm_up_stack.admin()) as ledger:
        bodies = [r.body_json + r.actor for r in ledger.query()]
    mrm_up_stack.proc.terminate()
    assert mrm_up_stack.proc.wait(60) == 0
    logs = [*mrm_up_stack.said, *(p.read_text() for p in mrm_up_stack.logs)]  # type: ignore[attr-defined]
    assert '"trace_id"' in logs[-2]  # the spans were printed (and are scanned)
    logs += [p.read_text(errors="replace") for p in mrm_up_stack.home.rglob("*.log")]
    assert sum(len(t) for t in logs) > 10_000  # DEBUG logs of a whole run were captured
    for name, secret in mrm_up_stack.secrets.items():
        for text in logs:
            assert secret not in text, f"the {name} appears in a log or an output"
        for body in bodies:
            assert secret not in body, f"the {name} appears in a ledger record"
        digest = tokens.token_sha256(secret)
        assert not any(digest in body for body in bodies), f"the {name}'s hash is in the ledger"
