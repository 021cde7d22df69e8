"""The `mrm` executable, its environment for a home directory, and a free port."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

MRM = str(Path(sys.executable).with_name("mrm"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mrm_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for `mrm` with its home at `home` and every service on a
    free port (no MRM_ variable inherited), updated with `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MRM_")}
    env |= {
        "MRM_HOME": str(home),
        "MRM_LEDGER_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_REGISTRY_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_EXPLAIN_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_PROXY_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_PROXY_METRICS_ADDR": "127.0.0.1:0",
        "MRM_PROXY_HTTP_ADDR": "127.0.0.1:0",
        "MRM_MONITOR_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_MONITOR_METRICS_ADDR": "127.0.0.1:0",
        "MRM_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_LOG_LEVEL": "WARNING",
    }
    return env | extra
