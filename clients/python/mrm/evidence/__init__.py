"""Evidence bundles: one zip an auditor takes away and checks offline (docs/evidence.md)."""
