"""The inference proxy: ONNX Runtime behind the Open Inference Protocol v2.

Every response is stamped, sampled into the ledger and traced, and inference
never waits on the ledger (see docs/ and ARCHITECTURE.md, "The prediction path").
"""
