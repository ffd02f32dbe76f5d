"""The service's one settings object, read from the environment and `.env` at the edge."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # The spec's service settings.
    host: str = "0.0.0.0"
    port: int = 8000
    log_level: str = "INFO"
    browser_agent_url: str | None = None
    ml_worker_url: str | None = None
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None

    # Temporal.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "orchestrator"
    # A cluster behind TLS (temporal_connection.py): PEM files, e.g. mounted from a Kubernetes
    # Secret. Certificate and key together are the client's mTLS identity; the CA checks the
    # server (system CAs when unset); the server name overrides the host name it is checked
    # against. An API key (Temporal Cloud) turns TLS on by itself.
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_tls_ca_path: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None
    # Queries are answered by a worker; past this the API says none is answering (503).
    query_timeout_seconds: float = Field(default=10.0, gt=0)
    # An approve/reject waits this long for a worker to take it; past it the API answers 503 and
    # the decision is void even if a worker picks it up later.
    decision_timeout_seconds: float = Field(default=10.0, gt=0)
    # How often the one shared poller per watched run reads it for GET /workflow/{id}/events.
    events_poll_seconds: float = Field(default=1.0, gt=0)
    # `key_id:base64-of-32-bytes,…`: the first encrypts every payload, all decrypt (payload_codec.py).
    payload_encryption_keys: SecretStr | None = None
    # Browser origins (the Temporal Web UI) allowed to call the /codec endpoint, comma separated.
    codec_cors_origins: str = "http://localhost:8233,http://127.0.0.1:8233"

    # Where datasets, artifacts and the dev server's database live.
    data_dir: Path = Path("data")
    # Where datasets, uploads and artifacts are kept (activities/storage.py): empty for DATA_DIR
    # itself (one disk shared by the API and every worker), or `s3://bucket/prefix` for any
    # S3-compatible store, so that no two processes need a shared disk; DATA_DIR then holds
    # only each process's own cache and scratch.
    storage_url: str = ""
    storage_endpoint_url: str | None = None  # MinIO, Ceph, R2...; unset: AWS's own endpoint
    storage_region: str | None = None
    # Unset: the standard AWS chain (AWS_ACCESS_KEY_ID..., profiles, the pod's role).
    storage_access_key_id: SecretStr | None = None
    storage_secret_access_key: SecretStr | None = None
    # Artifact downloads redirect to a short-lived presigned URL instead of passing through the
    # API. Off by default: the redirect target sends the bytes without the API's security
    # headers (CSP sandbox, nosniff), so a generated HTML report would run in the store's origin.
    storage_presign_downloads: bool = False

    # Per-run defaults (a run may not override them through the API).
    approval_timeout_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    max_rejections: int = Field(default=5, ge=0)
    max_critic_rounds: int = Field(default=2, ge=0)

    # Agents.
    llm_provider: Literal["auto", "openai", "anthropic", "offline"] = "auto"
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str | None = None  # any OpenAI-compatible server: Ollama, vLLM, LM Studio
    anthropic_model: str = "claude-haiku-4-5"
    anthropic_base_url: str | None = None
    llm_timeout_seconds: float = 120.0
    llm_max_validation_retries: int = Field(default=2, ge=0)

    # Dataset intake and execution.
    allow_local_datasets: bool = True
    max_dataset_bytes: int = 5 * 1024**3  # compressed input counts unpacked
    # With object storage, each worker caches the datasets it ran under DATA_DIR/cache; the least
    # recently used are removed past this size (those in use never are).
    dataset_cache_max_bytes: int = Field(default=20 * 1024**3, ge=0)
    max_dataset_columns: int = Field(default=2000, ge=1)
    # Above this many rows both brains train on a sample of this size (stratified by the target
    # for a classification), and the profile says so.
    training_sample_rows: int = Field(default=1_000_000, ge=1000)
    # Columns described in full to the agents; the rest travel as a compact summary, so the
    # context of every agent call stays bounded however wide the table.
    agent_profile_columns: int = Field(default=100, ge=2)
    dataset_timeout_seconds: float = 60.0
    # Local paths (and file:// URLs) are read only inside these folders, comma separated; empty
    # means none. Uploads are reached through POST /datasets, never by their path.
    dataset_roots: str = ""
    # Hosts, addresses or CIDRs that http(s) datasets may come from although they are internal
    # (loopback, private, link-local...), comma separated. Cloud metadata addresses never are.
    dataset_allowed_hosts: str = ""
    # The whole download, however slowly the server trickles it (DATASET_TIMEOUT_SECONDS bounds
    # each wait between bytes).
    dataset_download_deadline_seconds: float = Field(default=300.0, gt=0)
    execution_timeout_seconds: float = 900.0
    # Seconds the offline brain's training scripts spend tuning after the default candidates.
    training_tuning_seconds: float = Field(default=60.0, ge=0)
    execution_memory_mb: int = 2048
    execution_cpu_seconds: int = 1800
    execution_output_bytes: int = 1024 * 1024
    # POST /workflow/{id}/predict: rows per request, upload size, and the sandboxed scoring's
    # wall-clock limit.
    predict_max_rows: int = Field(default=10_000, ge=1)
    predict_max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    predict_timeout_seconds: float = Field(default=120.0, gt=0)
    # How generated code is isolated: "bubblewrap" (namespaces, the default; refused where it
    # cannot run) or "unisolated" (a plain limited subprocess, only when an operator means it).
    sandbox: Literal["bubblewrap", "unisolated"] = "bubblewrap"
    execution_max_processes: int = Field(default=256, ge=8)
    # Sandboxed processes (executions and predictions) one worker runs at once; more wait their
    # turn, heartbeating. It bounds the worker's memory at this times EXECUTION_MEMORY_MB.
    execution_max_concurrent: int = Field(default=4, ge=1)
    execution_disk_mb: int = Field(default=1024, ge=1)  # each of the work folder and /tmp

    # Who may call the API ("Running it for a team" in the README).
    auth_mode: Literal["none", "api_key", "oidc"] = "none"
    # With AUTH_MODE=none the API refuses a non-loopback bind unless this says it is meant.
    allow_insecure_bind: bool = False
    api_keys_file: Path | None = None  # JSON or YAML list of {name, roles, key_sha256}
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_roles_claim: str = "roles"  # a dotted path such as "realm_access.roles" works too
    oidc_leeway_seconds: float = Field(default=30, ge=0)
    # The desk's own sign-in with the identity provider (authorization code with PKCE); without
    # a client id the desk takes bearer tokens only (from a proxy in front of it, say).
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None  # a confidential client; public ones need none
    oidc_scopes: str = "openid"
    # Signs the sign-in's short-lived state cookie; the same on every API replica.
    desk_session_secret: SecretStr | None = None

    # Abuse limits, per principal (per client address when unauthenticated).
    rate_limit_default: str = "120/minute"
    rate_limit_start: str = "10/minute"
    rate_limit_storage: str = "memory://"  # redis://host:port/db shares limits across replicas
    max_active_runs_per_principal: int = Field(default=0, ge=0)  # 0: unlimited
    require_separate_approver: bool = False  # four eyes: nobody approves their own run

    # Webhooks (activities/notifications.py): comma-separated http(s) URLs told when a run
    # awaits approval, completes, fails or times out; signed with the secret when it is set.
    webhook_urls: str = ""
    webhook_secret: SecretStr | None = None
    webhook_format: Literal["json", "slack"] = "json"
    public_base_url: str = "http://localhost:8000"  # links in notifications point here

    # Metrics and health probes (README "Metrics and traces"). Tracing is configured with the
    # standard OTEL_* variables instead (telemetry.py).
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None  # when set, /metrics wants "Bearer <token>"
    # The worker's own port for /metrics, /health/live and /health/ready; 0 turns it off. Each
    # worker on one host needs its own.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)

    @field_validator("webhook_urls")
    @classmethod
    def _http_webhook_urls(cls, value: str) -> str:
        for url in _split_urls(value):
            if not url.lower().startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
        return value

    @property
    def webhook_targets(self) -> list[str]:
        return _split_urls(self.webhook_urls)

    @field_validator("storage_url")
    @classmethod
    def _s3_storage_url(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.lower().startswith("s3://") and value[5:].strip("/")):
            raise ValueError(
                f"STORAGE_URL {value!r} must be empty (files under DATA_DIR) or "
                "s3://bucket[/prefix]"
            )
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Paths under it travel to other processes (the ML Worker, the sandbox) and to generated
        # code running in its own working directory; relative paths would break there.
        return value.expanduser().resolve()

    @property
    def desk_oidc_login(self) -> bool:
        """Whether the desk signs people in with the identity provider itself."""
        return self.auth_mode == "oidc" and bool(self.oidc_client_id)

    @cached_property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @cached_property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


def _split_urls(value: str) -> list[str]:
    return [url.strip() for url in value.split(",") if url.strip()]
