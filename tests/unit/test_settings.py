"""Settings: `ATOLL_*` environment over `atoll.toml`, unknown keys and bad values refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atoll.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No `ATOLL_*` setting from the caller's shell, and a working directory without atoll.toml."""
    for key in list(os.environ):
        if key.upper().startswith("ATOLL_") and not key.upper().startswith("ATOLL_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _error() -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message, "a settings error must be one line"
    return message


class TestDefaults:
    def test_sqlite_under_data_dir(self, tmp_path: Path) -> None:
        settings = load_settings()
        assert settings.database_url == ""
        assert settings.data_dir == Path(".atoll")
        assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve() / '.atoll' / 'atoll.db'}"

    def test_other_defaults(self) -> None:
        settings = load_settings()
        assert settings.url == "http://127.0.0.1:8000"
        assert settings.port == 8000
        assert settings.token is None
        assert settings.log_format == "json"
        assert settings.cookie_secure is False

    def test_data_dir_moves_the_default_database(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("ATOLL_DATA_DIR", str(tmp_path / "elsewhere"))
        assert load_settings().effective_database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'atoll.db'}"

    def test_explicit_database_url_wins_over_data_dir(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_DATABASE_URL", "sqlite:////srv/atoll.db")
        assert load_settings().effective_database_url == "sqlite:////srv/atoll.db"


class TestSources:
    def test_environment_is_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_PORT", "9001")
        monkeypatch.setenv("ATOLL_URL", "https://atoll.example.com/")
        monkeypatch.setenv("ATOLL_TOKEN", "atl_secretsecret")
        settings = load_settings()
        assert settings.port == 9001
        assert settings.url == "https://atoll.example.com"
        assert settings.cookie_secure is True
        assert settings.token is not None
        assert settings.token.get_secret_value() == "atl_secretsecret"
        assert "atl_secretsecret" not in repr(settings)

    def test_toml_in_working_directory(self, tmp_path: Path) -> None:
        _write_toml(tmp_path / "atoll.toml", 'port = 7000\nlog_level = "DEBUG"\n')
        settings = load_settings()
        assert settings.port == 7000
        assert settings.log_level == "DEBUG"

    def test_environment_overrides_toml(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        _write_toml(tmp_path / "atoll.toml", 'port = 7000\nhost = "10.0.0.5"\n')
        monkeypatch.setenv("ATOLL_PORT", "7100")
        settings = load_settings()
        assert settings.port == 7100
        assert settings.host == "10.0.0.5"  # still from the file

    def test_overrides_win_over_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_PORT", "7100")
        assert load_settings(port=7200).port == 7200

    def test_atoll_config_names_the_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        _write_toml(tmp_path / "atoll.toml", "port = 7000\n")
        (tmp_path / "conf").mkdir()
        other = _write_toml(tmp_path / "conf" / "prod.toml", "port = 7300\n")
        monkeypatch.setenv("ATOLL_CONFIG", str(other))
        assert load_settings().port == 7300

    def test_atoll_config_missing_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        missing = tmp_path / "nope.toml"
        monkeypatch.setenv("ATOLL_CONFIG", str(missing))
        message = _error()
        assert "ATOLL_CONFIG" in message
        assert str(missing) in message

    def test_missing_default_file_is_fine(self, tmp_path: Path) -> None:
        assert not (tmp_path / "atoll.toml").exists()
        assert load_settings().port == 8000

    def test_invalid_toml(self, tmp_path: Path) -> None:
        _write_toml(tmp_path / "atoll.toml", "port = = 1\n")
        message = _error()
        assert "atoll.toml" in message
        assert "TOML" in message


class TestUnknownKeys:
    def test_unknown_environment_key_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_DATABSE_URL", "sqlite:///x.db")
        assert "ATOLL_DATABSE_URL" in _error()

    def test_unknown_toml_key_is_named(self, tmp_path: Path) -> None:
        _write_toml(tmp_path / "atoll.toml", "prot = 1\n")
        message = _error()
        assert "prot" in message
        assert "unknown" in message

    def test_test_variables_are_ignored(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_TEST_DB", "sqlite")
        monkeypatch.setenv("ATOLL_TEST_ANYTHING_AT_ALL", "1")
        assert load_settings().port == 8000


class TestInvalidValues:
    @pytest.mark.parametrize(
        ("variable", "value", "key"),
        [
            ("ATOLL_PORT", "abc", "port"),
            ("ATOLL_PORT", "0", "port"),
            ("ATOLL_PORT", "65536", "port"),
            ("ATOLL_URL", "atoll.example.com", "url"),
            ("ATOLL_MLFLOW_TRACKING_URI", "ftp://mlflow", "mlflow_tracking_uri"),
            ("ATOLL_DATABASE_URL", "mysql://u:p@db/atoll", "database_url"),
            ("ATOLL_LOG_LEVEL", "LOUD", "log_level"),
            ("ATOLL_SESSION_HOURS", "0", "session_hours"),
        ],
    )
    def test_environment_value(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        message = _error()
        assert variable in message
        assert f"`{key}`" in message
        assert message.startswith("invalid setting")

    def test_toml_value(self, tmp_path: Path) -> None:
        _write_toml(tmp_path / "atoll.toml", 'port = "abc"\n')
        message = _error()
        assert "port" in message
        assert message.startswith("invalid setting")

    def test_postgresql_url_gets_the_psycopg_driver(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_DATABASE_URL", "postgresql://atoll:pw@db:5432/atoll")
        assert load_settings().database_url == "postgresql+psycopg://atoll:pw@db:5432/atoll"

    def test_explicit_driver_is_kept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_DATABASE_URL", "postgresql+psycopg://atoll@db/atoll")
        assert load_settings().database_url == "postgresql+psycopg://atoll@db/atoll"
