"""The governance dashboard: "are our models safe and under control?" on one page.

Served with the reports (mrm.explain.http) at `/dashboard`, read-only and for the
auditor and admin roles. It reads only through the public gRPC APIs (registry,
ledger queries and proofs, monitor, proxy status), so an auditor can re-derive
every figure; each figure links to the ledger record it comes from
(`/dashboard/records/<record_id>`, with a server-verified inclusion proof).

sources.py   the clients, with the dashboard's own (auditor) credential
views.py     the figures as plain data, and the summary (traffic light) at the top
figures.py   reads each model's inventory, live status and fairness into them
integrity.py the ledger's checkpoint, its consistency with the last one seen, proofs
timeline.py  deploys, promotions, refusals and alerts, newest first, paged
http.py      the routes (HTML pages and the JSON data endpoints)
"""
