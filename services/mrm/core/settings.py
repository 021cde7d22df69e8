"""Server settings, read once in `main` from `MRM_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The services of an installation, in start order (each needs only those before
# it); `mrm serve NAME` takes these names, and each listens on its `<name>_addr`.
SERVICES = ("ledger", "registry", "proxy", "explain", "monitor")


class Settings(BaseSettings):
    """Every knob of the MRM services. Build once in `main` and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="MRM_", extra="ignore", use_attribute_docstrings=True
    )

    home: Path = Path(".mrm")
    """Directory for the embedded defaults: the SQLite database, the ledger key."""

    database_url: str | None = None
    """SQLAlchemy URL, e.g. postgresql+psycopg://root@127.0.0.1/mrm. Default: SQLite in `home`."""

    database_app_role: str | None = None
    """PostgreSQL role the services run as. Migrations grant it SELECT and INSERT
    on the ledger tables and nothing more (no UPDATE, DELETE or TRUNCATE)."""

    registry_addr: str = "localhost:50051"
    """Where the registry's gRPC server listens."""

    artifact_dir: Path | None = None
    """The content-addressed artifact store. Default: `home`/artifacts."""

    max_artifact_bytes: int = Field(default=2 << 30, ge=1024)
    """Largest artifact the registry accepts (default 2 GiB)."""

    watch_interval: float = Field(default=1.0, gt=0)
    """Seconds between WatchDeployments polls of the stage history."""

    proxy_addr: str = "localhost:8001"
    """Where the inference proxy (Open Inference Protocol v2 over gRPC) listens."""

    proxy_metrics_addr: str = "localhost:8002"
    """Where the proxy serves `/metrics` (Prometheus text format, plain HTTP, no
    authentication, as Triton's port 8002); empty switches it off. Loopback by
    default: set `0.0.0.0:8002` where Prometheus scrapes it (deploy/ does). Counts are
    per process: with MRM_PROXY_WORKERS=N, worker i serves its own on this port + i
    (scrape every port and sum; port 0 gives each a free port)."""

    proxy_http_addr: str = "localhost:8080"
    """Where the proxy serves the Open Inference Protocol v2 over HTTP/REST (JSON, and
    Triton's binary tensor extension), for tritonclient.http and KServe's REST
    clients; empty switches it off. 8080 as KServe and MLServer (8000, Triton's, is
    the reports' port here, and 8002 + i the workers' /metrics). With
    MRM_PROXY_WORKERS=N every worker serves it on this same port (SO_REUSEPORT)."""

    explain_addr: str = "localhost:50053"
    """Where the Explain service's gRPC server listens."""

    monitor_addr: str = "localhost:50054"
    """Where the monitor's gRPC server (mrm.v1.MonitorService, OutcomeService) listens."""

    monitor_metrics_addr: str = "localhost:8103"
    """Where the monitor serves `/metrics` (Prometheus text format, plain HTTP): drift
    scores per feature, windows, alerts, webhook deliveries; empty switches it off.
    (Not 8003: proxy workers take 8002, 8003, ... for their own /metrics.)"""

    monitor_poll_interval: float = Field(default=0.2, gt=0)
    """Seconds the monitor waits before asking the ledger again when it has caught up."""

    monitor_webhooks: str = ""
    """Where alerts are sent after they are recorded: a JSON list of
    {"url": ..., "format": "slack" | "alertmanager"}. Empty: alerts are only recorded."""

    http_addr: str = "localhost:8000"
    """Where the HTTP server of the explanation reports listens (GET /reports/<record id>)."""

    report_base_url: str = ""
    """Where people open the reports, for links in alerts (for example
    https://mrm.example.com). Empty: http(s)://MRM_HTTP_ADDR."""

    trace_url_template: str = "http://localhost:16686/trace/{trace_id}"
    """The link a report gives for a decision's trace; `{trace_id}` is replaced (Jaeger's UI)."""

    proxy_threads: int = Field(default=1, ge=1)
    """ONNX Runtime intra-op threads per model; 1 suits a small CPU serving many requests."""

    proxy_load_timeout: float = Field(default=60.0, gt=0)
    """Seconds a model may take to load before the proxy gives up on it."""

    proxy_workers: int = Field(default=1, ge=1, le=64)
    """Proxy processes serving MRM_PROXY_ADDR together (SO_REUSEPORT: needs MRM_REUSE_PORT=1
    and a fixed port), each with its own ONNX Runtime sessions and spool
    (`home`/proxy-worker-N/) and the same subject key. More processes pay only while
    cores are free (what 2 served on 2 cores: benchmarks/results/README.md)."""

    proxy_strict_timeout: float = Field(default=0.5, gt=0)
    """Seconds a strict model's decision waits for the ledger to take its record
    before the record goes to the local spool instead (fsync'd) and the response out."""

    proxy_queue_max: int = Field(default=10_000, ge=1)
    """Sampled records held in memory on their way to the ledger, in the proxy before the
    pipe to its shipper process and again in the shipper's queue (lost on a SIGKILL;
    past half of it the shipper moves the backlog to the spool; past all of it in the
    proxy, decisions are dropped, counted and written in a GAP record)."""

    proxy_shipper: Literal["thread", "process"] = "thread"
    """Where sampled decisions become records and go to the ledger: `thread`, a thread of
    the proxy's process; `process`, a child of the proxy fed through pipes
    (mrm.proxy.shipping) at a lower CPU priority, which takes record building off the
    proxy's interpreter lock and drains what it was handed even when the proxy is
    SIGKILLed. On 2 cores shared with the load it neither raised throughput nor cut
    p99, and strict decisions took 0.8 ms more (benchmarks/results/README.md): choose it
    where the proxy has cores to spare."""

    proxy_shipper_nice: int = Field(default=10, ge=0, le=19)
    """How much lower the shipper process's CPU priority is than the proxy's (nice(2)):
    when inference and auditing both want a core, inference gets it; the records wait in
    the pipe and the shipper's queue, and the spool takes what the queue cannot hold."""

    proxy_spool_max_records: int = Field(default=1_000_000, ge=1)
    """Records the proxy's local spool keeps while the ledger is away; past this,
    samples are dropped, counted, and recorded as a GAP once the ledger is back.
    About 0.5-2 KB of disk per record (`MRM_HOME`/proxy-spool.db); see mrm.proxy.spool."""

    subject_key_file: Path | None = None
    """Secret for hashing subject ids (HMAC-SHA-256). Default: `home`/subject.key, 0600."""

    ledger_addr: str = "localhost:50052"
    """Where the ledger's gRPC server listens (host:port; ':port' means all interfaces)."""

    ledger_origin: str | None = None
    """The log's origin line. Default: generated once per database as <host>/<random id>."""

    ledger_key_file: Path | None = None
    """Ed25519 signer key (C2SP note PRIVATE+KEY format). Default: `home`/ledger.key,
    generated on first start with mode 0600."""

    ledger_checkpoint_every: int = Field(default=1000, ge=1)
    """Sign a checkpoint once this many leaves have been appended since the last one."""

    ledger_checkpoint_interval: float = Field(default=5.0, gt=0)
    """...or once this many seconds have passed with unsigned leaves."""

    ledger_append_workers: int = Field(default=0, ge=0, le=64)
    """Worker processes that validate, canonicalize and hash appended records, fed the
    requests' wire bytes. 0: that work runs in the server process's threads, where it
    shares one interpreter lock with gRPC and the writer; on a dedicated host, set it
    to the cores the ledger may use (each worker holds ~40 MB)."""

    ledger_max_record_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest canonical record body accepted, in bytes."""

    ledger_max_batch: int = Field(default=4096, ge=1)
    """Most records in one AppendRecords call."""

    grpc_max_message_bytes: int = Field(default=64 << 20, ge=1 << 20)
    """Largest gRPC message a server accepts."""

    reuse_port: bool = False
    """Let several `mrm up` processes share a port (SO_REUSEPORT), as replicas on one
    host. Off by default so that a port already in use is an error, not a surprise."""

    shutdown_grace: float = Field(default=10.0, ge=0)
    """Seconds in-flight RPCs get to finish after SIGTERM."""

    ready_timeout: float = Field(default=60.0, gt=0)
    """Seconds `mrm up` waits for every service to report SERVING before saying ready."""

    health_interval: float = Field(default=2.0, gt=0)
    """Seconds between readiness probes of the database."""

    log_level: str = "INFO"
    """Python logging level for the services."""

    insecure: bool = False
    """Turn authentication off: every caller is "anonymous" with every role, and
    records say so. For a throwaway sandbox only; `mrm up --insecure` sets it."""

    auth_tokens_file: Path | None = None
    """The tokens file (SHA-256 of each token, its principal and roles; `mrm auth`
    edits it). Default: `home`/tokens.json, created by `mrm up` with mode 0600."""

    auth_config_file: Path | None = None
    """TOML: the OIDC issuers to trust (a CI job's id-token) and the client-certificate
    identities, each mapped to roles (see mrm.core.auth.config). Default:
    `home`/auth.toml when it exists."""

    auth_record_tokens: bool = True
    """The ledger records an ACCESS record for every credential in the tokens file that
    has none (made by `mrm up`, edited in by hand, or revoked while the ledger was
    down), at start and every MRM_AUTH_RECONCILE_INTERVAL. Off only for test stacks that
    count leaves."""

    auth_reconcile_interval: float = Field(default=30.0, gt=0)
    """Seconds between the ledger's passes over the tokens file (see
    MRM_AUTH_RECORD_TOKENS)."""

    admin_token_file: Path | None = None
    """Where `mrm up` writes the admin token that `mrmctl` and `mrm status` pick up on
    this machine. Default: `home`/admin.token (0600)."""

    registry_token_file: Path | None = None
    """The token the registry presents to the ledger. Default: `home`/registry.token."""

    explain_token_file: Path | None = None
    """The token the Explain service presents to the ledger and the registry.
    Default: `home`/explain.token."""

    monitor_token_file: Path | None = None
    """The token the monitor presents to the ledger and the registry. Default:
    `home`/monitor.token."""

    dashboard_token_file: Path | None = None
    """The auditor-role token the governance dashboard (served with the reports) presents
    to the ledger, registry, monitor and proxy. Default: `home`/dashboard.token; when it
    is missing the dashboard reads with the Explain service's token, which may not read
    the monitor or the proxy."""

    proxy_token_file: Path | None = None
    """The token the proxy presents to the ledger and the registry. Default:
    `home`/proxy.token."""

    proxy_require_token: bool = False
    """Check a token on the inference RPCs too (any role). Off: callers are usually
    services behind the mesh. Health checks never need one."""

    tls_cert_file: Path | None = None
    """PEM certificate the servers (gRPC and HTTP) present; with MRM_TLS_KEY_FILE,
    switches TLS on."""

    tls_key_file: Path | None = None
    """The private key of MRM_TLS_CERT_FILE."""

    tls_client_ca_file: Path | None = None
    """With TLS on, require client certificates signed by this CA (mTLS); map their
    identities to roles in MRM_AUTH_CONFIG_FILE ([[mtls]])."""

    tls_ca_file: Path | None = None
    """The CA the services trust when they call each other over TLS."""

    tls_client_cert_file: Path | None = None
    """The certificate the services present when they call each other with mTLS."""

    tls_client_key_file: Path | None = None
    """The key of MRM_TLS_CLIENT_CERT_FILE."""

    session_key_file: Path | None = None
    """Secret that signs browser sessions of the HTTP pages. Default: `home`/session.key."""

    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    """How long a browser stays signed in to the HTTP pages."""

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'mrm.db').resolve()}"

    def resolved_artifact_dir(self) -> Path:
        return self.artifact_dir or self.home / "artifacts"

    def resolved_key_file(self) -> Path:
        return self.ledger_key_file or self.home / "ledger.key"

    def resolved_subject_key_file(self) -> Path:
        return self.subject_key_file or self.home / "subject.key"

    def resolved_tokens_file(self) -> Path:
        return self.auth_tokens_file or self.home / "tokens.json"

    def resolved_auth_config(self) -> Path | None:
        if self.auth_config_file is not None:
            return self.auth_config_file
        default = self.home / "auth.toml"
        return default if default.exists() else None

    def token_file(self, name: str) -> Path:
        """The token file of `name` (admin, registry, explain, proxy, monitor or dashboard)."""
        configured: Path | None = getattr(self, f"{name}_token_file")
        return configured or self.home / f"{name}.token"
