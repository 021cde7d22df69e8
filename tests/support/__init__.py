"""Helpers the tests share (fixtures stay in conftest.py)."""
