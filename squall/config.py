"""Settings (from ``SQUALL_*`` environment variables and command-line flags).

One frozen dataclass holds everything a controller or invoker needs; ``from_env`` reads
the environment, and the CLI overrides single fields with ``dataclasses.replace``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _host_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 4096


def default_user_memory_mb() -> int:
    """Invoker capacity: half the host's memory, at least 1 GB (OpenWhisk's is 1 GB)."""
    return max(1024, _host_memory_mb() // 2)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(os.environ.get("SQUALL_HOME", ".squall")))
    host: str = "127.0.0.1"
    port: int = 3233
    # What clients use to reach the API (written to wskprops, given to actions).
    api_host: str = ""
    controller_id: str = "0"
    invoker_id: str = "0"
    # Invoker capacity in MB, counted from the memory limits of live containers.
    user_memory_mb: int = field(default_factory=default_user_memory_mb)
    # Idle warm containers are removed after this many seconds (the seed's 5 minutes).
    keep_warm_s: float = 300.0
    # Freeze (cgroup freezer) containers idle this many seconds; 0 = never. Off by default:
    # idle runtimes use <= 0.3 % of a CPU here, and a thaw adds ~0.2 ms to the next run.
    pause_grace_s: float = 0.0
    # A run finding its action's containers busy waits up to this long for one of them
    # when they free a slot sooner than a new container would be needed (the pool's WARM
    # WAIT rule, as OpenWhisk's scheduler's stale threshold); 0 = start one at once.
    warm_wait_ms: float = 20.0
    # Stem cells (prewarmed runtimes), ``kind@memoryMBxcount`` items, or "manifest": the
    # runtimes manifest's ``stemCells`` of the kinds offered; see invoker/prewarm.py.
    stem_cells: str = "manifest"
    # How long a blocking invoke waits before answering 202 (OpenWhisk: 60 s).
    max_blocking_wait_ms: int = 60_000
    max_request_bytes: int = 1024 * 1024
    # Namespace throttles (OpenWhisk defaults); enforced by the throttles issue.
    invocations_per_minute: int = 60
    concurrent_invocations: int = 30
    fires_per_minute: int = 60
    sequence_max_length: int = 50
    # Shortest alarms/interval the built-in alarms feed accepts, in seconds. OpenWhisk's
    # is one minute (whole minutes only); below 60, fractional `minutes` are accepted.
    alarms_min_interval_s: float = 60.0
    # An operator's runtimes manifest (OpenWhisk's runtimes.json shape, with the "squall"
    # object per kind): its kinds replace or add to squall/runtimes/runtimes.json's.
    runtimes_manifest: str = ""
    # Where `squall runtimes install` put Node.js builds and library sets ({cache} in the
    # manifest); empty = $XDG_CACHE_HOME/squall/runtimes or ~/.cache/squall/runtimes.
    runtimes_cache: str = ""
    log_level: str = "info"
    # Sandbox: run actions as plain processes without namespaces and cgroups (development
    # only: actions can then read and change everything the invoker can).
    unsafe_no_isolation: bool = False
    # Sandbox network for namespaces without a ``network`` limit of their own: "egress"
    # (a link out under the egress rules, as in OpenWhisk) or "none" (loopback only).
    sandbox_network: str = "egress"
    # Egress rules (squall/sandbox/egress.py): CIDR[:PORT[-PORT]] items, comma-separated.
    # Allowed ones are reachable even in the denied ranges; denied ones are added to them.
    sandbox_allow: str = ""
    sandbox_deny: str = ""
    # Name servers sandboxes use (comma-separated addresses); empty = the host's.
    sandbox_dns: str = ""
    # Sandbox addresses come from here; each invoker on a host claims a /20 of it.
    sandbox_subnet: str = "172.29.0.0/16"
    # Where containers' cgroups go, relative to the cgroup hierarchy's root.
    cgroup_root: str = "squall"
    # Container backend of the built-in kinds: "process" (the process sandbox) or "docker"
    # (Squall's runtime images on dockerd). Custom-image (blackbox) actions always run on
    # Docker, when a Docker daemon answers at ``docker_host``.
    container_backend: str = "process"
    # The Docker daemon's socket (unix:///path); empty = DOCKER_HOST or /var/run/docker.sock.
    docker_host: str = ""
    # Providers (cluster shape). Store: empty = SQLite at ``db_path``, or a
    # ``postgresql://`` URL. Bus: empty = in-process queues, or a ``nats://`` URL.
    store_url: str = ""
    bus_url: str = ""
    # Activation records older than this many days are deleted; 0 = kept for ever.
    activation_retention_days: float = 0.0
    # Cluster health: invokers ping every ``ping_interval_s``; a controller calls one
    # unresponsive after ``unresponsive_after_s`` without a ping (no new work) and offline
    # after ``offline_after_s`` (its queue is moved). What it had started is recorded as
    # failed once it restarted, or stayed silent ``lost_after_s`` (a ping of the same
    # process first: left to it). Each controller takes 1/``cluster_controllers`` of
    # every invoker's memory.
    ping_interval_s: float = 1.0
    unresponsive_after_s: float = 3.0
    offline_after_s: float = 10.0
    lost_after_s: float = 30.0
    cluster_controllers: int = 1
    # Standalone over https: PEM certificate (chain) and private key files; both or neither.
    # A cluster terminates TLS in nginx instead (deploy/nginx/).
    tls_cert: str = ""
    tls_key: str = ""
    # The secret action keys are derived from (invoker/apikeys.py). Empty: standalone
    # keeps one in ``$SQUALL_HOME/action-key.secret``; a cluster's invokers must share
    # one (``squall cluster up`` makes one), or actions get no API key. Never printed.
    action_key_secret: str = field(default="", repr=False)
    # The key default parameters and log-forwarding credentials are encrypted with at rest
    # (AES-256-GCM, base64 of 32 bytes; squall/store/encryption.py). Empty: standalone
    # keeps one in ``$SQUALL_HOME/parameter.key``; every member of a cluster must be given
    # the same one (``squall cluster up`` makes one), or parameters are stored in plain.
    # During a rotation the key before it goes in ``parameter_key_previous``. Never printed.
    parameter_key: str = field(default="", repr=False)
    parameter_key_previous: str = field(default="", repr=False)
    # Log forwarding (squall/logforwarding/): lines waiting to be sent, over all
    # namespaces, before new ones are dropped (and counted); and the base URL of Azure Log
    # Analytics' Data Collector API, ``{customer_id}`` replaced by the configured one.
    log_forwarding_buffer_lines: int = 10_000
    log_forwarding_azure_url: str = "https://{customer_id}.ods.opinsights.azure.com"
    # OpenWhisk's feature flag: a new action without a ``provide-api-key`` annotation gets
    # ``provide-api-key: false`` (off: new actions get the key, as old ones always do).
    require_api_key_annotation: bool = True
    # Set by ``squall cluster up`` (cli/supervisor.py) for each member it starts: a nonce
    # of this start that ``/ping`` returns, so the supervisor knows its own member answers
    # (not another server on the port); and the file of its restart counts, which a
    # controller exposes in /metrics (metrics/supervisor.py). Empty: not supervised.
    start_token: str = field(default="", repr=False)
    supervisor_file: str = ""

    @property
    def db_path(self) -> Path:
        return self.home / "squall.db"

    @property
    def containers_dir(self) -> Path:
        return self.home / "containers"

    @property
    def docker_dir(self) -> Path:
        """The Docker backend's lock (its containers live in dockerd)."""
        return self.home / "docker"

    @property
    def effective_api_host(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return self.api_host or f"{scheme}://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``SQUALL_<FIELD>`` variables, then apply ``overrides`` (None = not given)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"SQUALL_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls(), f.name))
            if kind is bool:  # bool("0") would be True
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = Path(raw) if kind is type(Path()) else kind(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "home" in values:
            values["home"] = Path(values["home"])
        return cls(**values)
