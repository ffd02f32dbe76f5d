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
    # Queries are answered by a worker; past this the API says none is answering (503).
    query_timeout_seconds: float = Field(default=10.0, gt=0)

    # Where datasets, artifacts and the dev server's database live.
    data_dir: Path = Path("data")

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
    max_dataset_bytes: int = 200 * 1024 * 1024
    max_dataset_columns: int = Field(default=2000, ge=1)
    dataset_timeout_seconds: float = 60.0
    execution_timeout_seconds: float = 900.0
    execution_memory_mb: int = 2048
    execution_cpu_seconds: int = 1800
    execution_output_bytes: int = 1024 * 1024

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Paths under it travel to other processes (the ML Worker, the sandbox) and to generated
        # code running in its own working directory; relative paths would break there.
        return value.expanduser().resolve()

    @cached_property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @cached_property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"
