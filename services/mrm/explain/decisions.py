"""ListDecisions: the recorded decisions about one subject, newest first.

The caller sends the subject's raw id; it is hashed here with the server's
subject key exactly as the inference proxy hashes it when it stamps a decision
(`mrm.kernel.subjects`), so it matches the stored reference.
The raw id is never stored or logged.
"""

from __future__ import annotations

from collections.abc import Sequence

from mrm.client.ledger import Record
from mrm.client.timestamps import timestamp_us
from mrm.core.errors import NotFound
from mrm.explain.evidence import Evidence
from mrm.explain.validate import DecisionQuery
from mrm.kernel.subjects import SubjectHasher
from mrm.v1 import ledger_pb2


class Decisions:
    def __init__(self, evidence: Evidence, subjects: SubjectHasher) -> None:
        self.evidence = evidence
        self.subjects = subjects

    def subject_ref(self, subject_id: str) -> str:
        return self.subjects.subject_ref(subject_id)

    def list(self, q: DecisionQuery) -> tuple[Sequence[Record], str]:
        """One page of the subject's PREDICTION records and the next page's token.

        NOT_FOUND when the ledger holds no decision about the subject at all;
        an empty page when it does but none matches the model or time filters.
        """
        ref = self.subject_ref(q.subject_id)
        req = ledger_pb2.QueryRecordsRequest(
            kind=ledger_pb2.RECORD_KIND_PREDICTION,
            subject=ref,
            model_name=q.model_name,
            page_size=q.page_size,
            page_token=q.page_token,
            newest_first=True,
        )
        if q.start_us is not None:
            req.start_time.CopyFrom(timestamp_us(q.start_us))
        if q.end_us is not None:
            req.end_time.CopyFrom(timestamp_us(q.end_us))
        page = self.evidence.query_page(req)
        if not page.records and not q.page_token and self._unknown(ref):
            raise NotFound(
                "no decision about this subject is recorded (check the id: it must be the "
                "subject_id sent to the inference proxy)"
            )
        return page.records, page.next_page_token

    def _unknown(self, ref: str) -> bool:
        return self.evidence.latest(kind="PREDICTION", subject=ref) is None
