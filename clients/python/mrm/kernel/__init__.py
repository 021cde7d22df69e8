"""The shared kernel: the domain concepts more than one part of MRM must agree on.

- `mrm.kernel.ids`: record ids (UUIDv7), drawn, derived and parsed
- `mrm.kernel.clock`: the clock records are stamped with (µs since the epoch, UTC)
- `mrm.kernel.names`: model names and semver versions
- `mrm.kernel.subjects`: the keyed hash that stands in for a subject id
- `mrm.kernel.schema`: a model's input schema (features, dtypes, positions)

The services, the proxy and the clients import these rather than each other:
a service reaches another only through the public SDK (`mrm.client`), the
verifier (`mrm.tlog`) and the generated API (`mrm.v1`);
tests/unit/test_import_boundaries.py holds them to it. The kernel itself
depends on nothing of MRM's but `mrm.tlog`, raises only ValueError, and knows
no transport, so a server maps its errors to a status (mrm.core.errors.parse_field).
"""
