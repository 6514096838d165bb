from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import AliasChoices, Field, SecretStr

from unde_common.settings import (
    ENV_FILE_VAR,
    CommaIntList,
    DbPoolSettings,
    Duration,
    HttpServiceSettings,
    PostgresDsn,
    RedisDsn,
    SettingsError,
    UndeSettings,
    redis_db,
    resolve_env_file,
)


class DemoSettings(HttpServiceSettings, DbPoolSettings):
    app_name: str = "demo"
    port: int = Field(default=8123, ge=1, le=65535)
    staging_db_url: PostgresDsn = SecretStr("postgresql://u:p@localhost:6432/unde_staging")
    redis_url: RedisDsn = SecretStr("redis://localhost:6379/7")
    api_token: SecretStr = SecretStr("")
    stores: CommaIntList = Field(default_factory=list)
    window: Duration = timedelta(hours=24)


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / ".env"
    path.write_text("")
    monkeypatch.setenv(ENV_FILE_VAR, str(path))
    for var in ("PORT", "REDIS_URL", "STAGING_DB_URL", "API_TOKEN", "LOG_LEVEL", "STORES", "WINDOW"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_loads_env_file_case_insensitively(env_file: Path) -> None:
    env_file.write_text(
        "PORT=9001\n"
        "redis_url=redis://:s3cret@10.1.0.4:6379/7\n"
        "Api_Token=tok-123\n"
        "LOG_LEVEL=DEBUG\n"
        "STORES=6643, 9204,9073,16546\n"
        "WINDOW=24h\n"
        "DB_POOL_MAX_SIZE=4\n"
    )
    s = DemoSettings.load()
    assert s.port == 9001
    assert s.log_level == "DEBUG"
    assert s.redis_url.get_secret_value() == "redis://:s3cret@10.1.0.4:6379/7"
    assert redis_db(s.redis_url) == 7
    assert s.api_token.get_secret_value() == "tok-123"
    assert s.stores == [6643, 9204, 9073, 16546]
    assert s.window == timedelta(hours=24)
    assert s.db_pool_max_size == 4
    # secrets never show in repr / str
    assert "s3cret" not in repr(s) and "tok-123" not in repr(s)


def test_environment_overrides_file_and_overrides_win(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file.write_text("PORT=9001\n")
    monkeypatch.setenv("PORT", "9002")
    assert DemoSettings.load().port == 9002
    assert DemoSettings.load(port=9003).port == 9003


def test_defaults_without_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_FILE_VAR, raising=False)
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_env_file("demo-app-that-does-not-exist") is None
    s = DemoSettings.load()
    assert s.port == 8123 and s.host == "127.0.0.1" and s.app_name == "demo"
    (tmp_path / ".env").write_text("PORT=7000\n")
    assert resolve_env_file("demo-app-that-does-not-exist") == tmp_path / ".env"
    assert DemoSettings.load().port == 7000


def test_bad_value_names_the_field_without_echoing_secrets(env_file: Path) -> None:
    env_file.write_text("PORT=eighty\nREDIS_URL=http://:hunter2@10.1.0.4/7\nLOG_LEVEL=LOUD\n")
    with pytest.raises(SettingsError) as info:
        DemoSettings.load()
    err = info.value
    assert set(err.problems) == {"PORT", "REDIS_URL", "LOG_LEVEL"}
    text = str(err)
    assert "invalid settings for demo" in text and str(env_file) in text
    assert "PORT: Input should be a valid integer" in text
    assert "scheme must be one of redis, rediss, unix" in text
    assert "hunter2" not in text


def test_out_of_range_and_bad_dsn(env_file: Path) -> None:
    env_file.write_text("PORT=70000\nSTAGING_DB_URL=postgresql://u:p@:6432\n")
    with pytest.raises(SettingsError) as info:
        DemoSettings.load()
    assert "PORT" in info.value.problems and "less than or equal to 65535" in info.value.problems["PORT"]
    assert info.value.problems["STAGING_DB_URL"].endswith("PostgreSQL URL has no host")


def test_socket_dsn_is_accepted(env_file: Path) -> None:
    env_file.write_text("STAGING_DB_URL=postgresql://postgres:@/postgres?host=/run/postgresql\n")
    assert "host=/run/postgresql" in DemoSettings.load().staging_db_url.get_secret_value()


def test_missing_explicit_env_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FILE_VAR, str(tmp_path / "nope.env"))
    with pytest.raises(SettingsError, match=r"UNDE_ENV_FILE: file .*nope.env does not exist"):
        DemoSettings.load()


def test_settings_are_frozen(env_file: Path) -> None:
    s = DemoSettings.load()
    with pytest.raises(ValueError, match="frozen"):
        s.__setattr__("port", 1)


def test_base_defaults() -> None:
    s = UndeSettings()
    assert s.environment == "production" and s.metrics_port == 9808 and s.metrics_enabled


class AliasedSettings(HttpServiceSettings):
    app_name: str = "voice"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("voice_http_port", "port"))


def test_spec_alias_names_are_read_and_reported(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_HTTP_PORT", raising=False)
    env_file.write_text("VOICE_HTTP_PORT=9080\n")
    assert AliasedSettings.load().port == 9080
    env_file.write_text("PORT=9081\n")
    assert AliasedSettings.load().port == 9081
    assert AliasedSettings.load(port=9082).port == 9082
    env_file.write_text("VOICE_HTTP_PORT=x\n")
    with pytest.raises(SettingsError) as info:
        AliasedSettings.load()
    assert list(info.value.problems) == ["VOICE_HTTP_PORT / PORT"]
