"""The monitor: drift, outcomes and alerts on the recorded decisions."""
