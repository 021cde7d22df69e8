"""A monitored stack (World: registry, ledger and monitor engine) and the traffic it sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.deploy.schema import onnx_inputs
from mrm.kernel.schema import InputSchema
from mrm.monitor.app import report_base
from mrm.monitor.engine import Monitor
from mrm.proxy.audit import prediction_record
from mrm.v1 import registry_pb2
from tests.conftest import RunningLedger
from tests.support.auth import issue
from tests.support.credit import applicants

MONITOR_TOML = "[monitor]\nmin_rows = 200\n[[monitor.window]]\nrows = 300\n"


class World:
    """A monitor engine over a running stack: proxy and monitor ledger clients, the
    deployed credit-risk 1.0.0 model, and a Monitor reading from the ledger."""

    def __init__(self, stack: RunningLedger, tmp: Path) -> None:
        tokens = stack.settings.resolved_tokens_file()
        self.stack = stack
        self.proxy = LedgerClient(
            stack.addr, auth=ClientAuth(issue(tokens, "test-proxy", "proxy"), None, "proxy")
        )
        self.monitor_auth = ClientAuth(issue(tokens, "mrm-monitor", "monitor"), None, "monitor")
        self.reader = LedgerClient(stack.addr, auth=self.monitor_auth)
        with RegistryClient(stack.registry_addr, auth=self.monitor_auth) as reg:
            version = reg.get_version("credit-risk", "1.0.0")
            shas = {a.role: a.sha256 for a in version.artifacts}
            onnx = reg.download(shas[registry_pb2.ARTIFACT_ROLE_ONNX_MODEL])
            self.schema = InputSchema.from_json(
                reg.download(shas[registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA])
            )
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.sent = 0

    def monitor(self, notify: Any = None) -> Monitor:
        # The stack's own monitor follows the same ledger and derives the same record
        # ids: the records must match it byte for byte (the link too) to be duplicates.
        base = report_base(self.stack.settings)
        return Monitor(
            LedgerClient(self.stack.addr, auth=self.monitor_auth),
            RegistryClient(self.stack.registry_addr, auth=self.monitor_auth),
            notify=notify,
            page_size=100,
            report_link=f"{base}/reports/drift/{{model}}?version={{version}}",
        )

    def serve(self, frame: pd.DataFrame, version: str = "1.0.0") -> list[str]:
        """Run each row through ONNX Runtime and record it as the proxy does."""
        names = [i.name for i in self.session.get_inputs()]
        records = []
        for i in range(len(frame)):
            feeds = dict(zip(names, onnx_inputs(self.schema, frame.iloc[[i]]), strict=True))
            out = self.session.run(None, feeds)
            outputs = {
                o.name: np.asarray(v) for o, v in zip(self.session.get_outputs(), out, strict=True)
            }
            self.sent += 1
            records.append(
                prediction_record(
                    record_id=uuid7(),
                    model_name="credit-risk",
                    model_version=version,
                    onnx_sha256="0" * 64,
                    subject="",
                    trace_id="",
                    span_id="",
                    inputs=feeds,
                    outputs=outputs,
                    request_id=str(self.sent),
                )
            )
        for start in range(0, len(records), 500):
            self.proxy.append(records[start : start + 500])
        return [r.record_id for r in records]

    def kinds(self, kind: str) -> list[Any]:
        return list(self.reader.query(kind=kind))


def uuid7() -> str:
    """A fresh record id, as the proxy makes them."""
    from mrm.client.ids import new_record_id

    return new_record_id()


def drain(monitor: Monitor) -> None:
    """Step the monitor until it has nothing left to judge."""
    while monitor.step():
        pass


def applications(n: int, seed: int, income_factor: float = 1.0) -> pd.DataFrame:
    """`n` credit applications, incomes scaled by `income_factor` (to make drift)."""
    frame = applicants(n, seed)[["income", "debt_to_income", "credit_history_months"]]
    frame["income"] = frame["income"] * income_factor
    return frame
