"""Running mrmctl against a running ledger stack."""

from __future__ import annotations

from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from tests.conftest import RunningLedger


def cli(stack: RunningLedger, *args: str) -> Result:
    """Run `mrmctl *args` in process against `stack`'s ledger, registry and explain."""
    return CliRunner().invoke(
        mrmctl,
        [
            "--ledger-addr",
            stack.addr,
            "--registry-addr",
            stack.registry_addr,
            *args,
            *(
                ["--explain-addr", stack.explain_addr]
                if args and args[0] in ("why", "predictions", "deploy")
                else []
            ),
        ],
        env={
            "MRM_REPORT_BASE_URL": f"http://{stack.http_addr}",
            "MRM_TRACE_URL_TEMPLATE": "https://jaeger.example/trace/{trace_id}",
        },
    )
