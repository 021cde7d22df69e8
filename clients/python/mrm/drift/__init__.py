"""Drift statistics: a reference profile of the deploy-time data, and the comparison of a
window of live traffic against it.

Pure functions over plain data: no I/O, no clock. `config` parses the `[monitor]` table of
mrm.toml, `profile` builds the reference profile, `compare` judges a window against it, and
`performance` measures live metrics against the deploy snapshot once labels arrive.
"""
