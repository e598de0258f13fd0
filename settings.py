"""The one configuration object, shared by the API, the worker, Alembic and the CLI."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, IPvAnyNetwork, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent


def usable_cores() -> int:
    """The cores this process may run on (a cpuset's, in a container), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIO_", extra="ignore")

    # An asyncpg URL; empty means "start the embedded PostgreSQL" (dev stack and tests only).
    database_url: str = ""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "provisio-deployments"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    # How long the API waits for the workflow service to confirm a start; past it the launch
    # answers 503 "not confirmed" (a retry with the same Idempotency-Key is then safe).
    temporal_rpc_timeout_s: float = 10.0

    # Signs API tokens. The embedded stack generates one per data directory.
    secret_key: str = Field(default="", repr=False)
    access_token_minutes: int = 60
    # Derives each pipeline run's callback token (domain/callback_tokens.py): the API verifies
    # with it, the worker hands tokens out with it. Separate from secret_key so that the worker,
    # which needs this one, never holds the key that signs API tokens. The embedded stack
    # generates one per data directory (var/callback_secret).
    callback_secret: str = Field(default="", repr=False)
    # Serve Swagger UI at /docs (its files from a package, under a strict CSP). Off unless asked
    # for: the embedded dev stack turns it on; /openapi.json is served either way.
    api_docs: bool = False

    # Sign-in (api/login_throttle.py, api/password_pool.py). Argon2 runs on this many threads of
    # its own, never on the event loop; at most sign_in_max_in_flight sign-ins are in progress
    # per API process (kept below the database pool), the next ones answer 503 at once.
    password_hash_threads: int = 2
    sign_in_max_in_flight: int = 16
    # Per account: this many failures in a row cost no wait, then each attempt waits twice as long
    # as the one before, from login_backoff_base_s up to login_backoff_max_s: slow for a guesser,
    # never a long lockout for the user. Failures are forgotten after login_failure_window_s quiet.
    login_free_failures: int = 5
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 60.0
    login_failure_window_s: int = 900
    # Per client address: this many failures per window, then 429 until the window ends.
    login_client_max_failures: int = 30
    # An address that signed in as a user within this long has a backoff of its own for that user,
    # so a guesser elsewhere cannot hold the user out.
    login_known_client_s: int = 30 * 86400
    # Proxies whose X-Forwarded-For is believed (CIDRs, a JSON list in the environment). Empty:
    # the client's address is the peer's. Run uvicorn with proxy_headers off so this is the only
    # place that decides.
    trusted_proxies: list[IPvAnyNetwork] = []

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # `provisio api` serves with this many processes on the one port (api/server.py); empty or
    # "auto": one per core this process may run on. 1 is a single process, as before. Each
    # process has its own database pool (up to 30 connections), argon2 threads, sign-in bound and
    # event-stream caps: PostgreSQL's max_connections must cover them all.
    api_processes: int = Field(default_factory=usable_cores, ge=1)
    # Live event streams (GET /api/deployments/{id}/events) one user may hold open at once, per
    # API process; the next one is answered 429 (api/stream_slots.py).
    max_event_streams_per_user: int = Field(default=8, ge=1)
    # Where the callback plugin reaches the API (it runs on Jenkins agents or in the worker).
    public_url: str = "http://127.0.0.1:8000"

    # Observability (telemetry/). The worker serves Prometheus metrics (temporalio's runtime
    # metrics and Provisio's) on this host:port when set; the API serves /metrics on its own port.
    worker_metrics_address: str = ""
    # Traces go to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318) when set, or when the
    # standard OTEL_EXPORTER_OTLP_ENDPOINT is; otherwise no tracing at all (no cost either).
    otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "otlp_endpoint", "PROVISIO_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )

    # Names this worker's host in its own task queue (`<temporal_task_queue>@<host>`), where the
    # runs it started on this machine (local runner) are watched and stopped. Empty: hostname.
    worker_host: str = ""
    # How long a run's host may leave a start, status check or stop untaken before the run
    # counts as lost with its host (the deployment then fails with that reason).
    host_answer_timeout_s: int = 300
    # Workflows a worker keeps in memory (about 0.27 MB each, sandbox included). A deployment's
    # workflow lives as long as the deployment, and most wait for days with nothing to do: one
    # past this is evicted and replayed from its (short) history when something happens to it.
    worker_max_cached_workflows: int = Field(default=200, ge=1)

    # Outgoing webhooks (workflows/webhook_delivery.py): a receiver of every deployment's events,
    # besides each user's own (PATCH /api/users/me); empty: none. Its secret signs what it gets:
    # at least 32 characters, required with a URL (the worker refuses to start without it).
    webhook_url: str = ""
    webhook_secret: str = Field(default="", repr=False)
    # Receivers are refused when their address is not a public one (loopback, private, link-local,
    # unspecified, ...): checked when a URL is set and again after DNS at each delivery, so a
    # user's URL cannot make the worker call the internal network. The dev stack turns it on.
    webhook_allow_private: bool = False

    # Which pipeline runner the worker uses: "local" (ansible-runner on the worker's host, the
    # embedded default), "jenkins", or "manual" (an external system sends the callback).
    pipeline_runner: str = "local"
    # Default bound on the wait for the callback when a template sets none.
    default_callback_timeout_s: int = 3600
    # How often the workflow asks the runner for its status while waiting.
    pipeline_poll_interval_s: int = 30
    # How long a failed deployment keeps what it built when its template sets no
    # `provisio.failure_retention_s`; then it is torn down on its own.
    default_failure_retention_s: int = 86400
    # A destroy at the end of a lease that fails is tried again this long after (it is never
    # dropped; the deployment shows the new time as its expiry).
    lease_destroy_retry_s: int = 3600
    # A deployment's workflow continues as new past this many history events.
    workflow_max_history_events: int = 2000

    # Quotas (api/quotas.py): per role, how many deployments a user may hold at once (every one
    # not cancelled, destroyed or rejected) and how many GB their disks may add up to; empty or
    # "unlimited": no limit. An admin sets a user's own limits with PATCH /api/users/{id}.
    quota_admin_max_active_deployments: int | None = Field(default=None, ge=0)
    quota_admin_max_total_gb: int | None = Field(default=None, ge=0)
    quota_operator_max_active_deployments: int | None = Field(default=10, ge=0)
    quota_operator_max_total_gb: int | None = Field(default=1000, ge=0)
    quota_viewer_max_active_deployments: int | None = Field(default=0, ge=0)
    quota_viewer_max_total_gb: int | None = Field(default=0, ge=0)
    # A launch's or a resize's reservation counts against its user's quota until its deployment
    # row (or its change's history row) exists, or for this long when the workflow service never
    # said whether it took the start or the change: well above temporal_rpc_timeout_s and the
    # time a worker takes to record a started deployment.
    quota_reservation_ttl_s: int = Field(default=900, ge=60)

    # Disk work: "directory" (image files under sandbox_root; the safe default) or "lvm".
    disk_backend: str = "directory"
    sandbox_root: Path = PROJECT_ROOT / "var" / "sandbox"
    # Directory backend: also loop-mount each image file on its directory (needs root).
    directory_mount: bool = False
    # LVM backend: the physical volumes the volume groups are made of.
    lvm_pvs: list[str] = []
    # Local runner: one private data directory per deployment lives under here.
    runner_dir: Path = PROJECT_ROOT / "var" / "runs"

    jenkins_url: str = "http://127.0.0.1:8080"
    jenkins_user: str = ""
    jenkins_token: str = Field(default="", repr=False)
    jenkins_job: str = "provisio-deploy"

    # Embedded stack: where PostgreSQL's data, Temporal's database file and secrets live.
    data_dir: Path = PROJECT_ROOT / "var"
    admin_password: str = Field(default="", repr=False)

    @field_validator("api_processes", mode="before")
    @classmethod
    def _auto_processes(cls, value: object) -> object:
        """An empty value or "auto" in the environment: one per core."""
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return usable_cores()
        return value

    @field_validator(
        "quota_admin_max_active_deployments",
        "quota_admin_max_total_gb",
        "quota_operator_max_active_deployments",
        "quota_operator_max_total_gb",
        "quota_viewer_max_active_deployments",
        "quota_viewer_max_total_gb",
        mode="before",
    )
    @classmethod
    def _unlimited(cls, value: object) -> object:
        """An empty value or "unlimited" in the environment: no limit."""
        if isinstance(value, str) and value.strip().lower() in ("", "unlimited", "none", "null"):
            return None
        return value

    def role_quota(self, role: str) -> tuple[int | None, int | None]:
        """A role's default (max_active_deployments, max_total_gb); None: unlimited."""
        defaults = {
            "admin": (self.quota_admin_max_active_deployments, self.quota_admin_max_total_gb),
            "operator": (
                self.quota_operator_max_active_deployments,
                self.quota_operator_max_total_gb,
            ),
            "viewer": (self.quota_viewer_max_active_deployments, self.quota_viewer_max_total_gb),
        }
        return defaults.get(role, (0, 0))

    def host_task_queue(self) -> str:
        """This worker host's own task queue."""
        return f"{self.temporal_task_queue}@{self.worker_host or socket.gethostname()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
