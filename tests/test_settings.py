"""Settings come from the environment and `.env`, with the spec's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings

SPEC_NAMES = ("HOST", "PORT", "LOG_LEVEL", "BROWSER_AGENT_URL", "ML_WORKER_URL",
              "OPENAI_API_KEY", "ANTHROPIC_API_KEY")  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (*SPEC_NAMES, "TEMPORAL_ADDRESS", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_spec_env_file_is_read(clean_env: Path):
    (clean_env / ".env").write_text(
        "HOST=127.0.0.1\nPORT=9000\nLOG_LEVEL=DEBUG\n"
        "BROWSER_AGENT_URL=http://localhost:8001\nML_WORKER_URL=http://localhost:8002\n"
        "OPENAI_API_KEY=sk-from-dotenv\nTEMPORAL_ADDRESS=temporal:7233\n"
    )
    settings = Settings()
    assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 9000, "DEBUG")
    assert settings.browser_agent_url == "http://localhost:8001"
    assert settings.ml_worker_url == "http://localhost:8002"
    assert settings.temporal_address == "temporal:7233"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-dotenv"
    assert "sk-from-dotenv" not in repr(settings), "secrets never print"


def test_the_environment_wins_over_the_env_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    (clean_env / ".env").write_text("PORT=9000\n")
    monkeypatch.setenv("PORT", "9100")
    assert Settings().port == 9100


def test_the_data_directory_is_made_absolute(clean_env: Path):
    assert Settings().data_dir == clean_env / "data"
    assert Settings().artifacts_dir == clean_env / "data" / "artifacts"


def test_a_bad_value_names_the_setting(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAX_REJECTIONS", "-1")
    with pytest.raises(ValueError, match="max_rejections"):
        Settings()
