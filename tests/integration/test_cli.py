"""The real `atoll` CLI against the real server on a loopback port, as CI would run it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from atoll.auth.policy import Role
from atoll.cli import app

from .conftest import Caller, MakeCaller


def atoll(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def ok_json(*args: str) -> Any:
    result = atoll(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ATOLL_* settings from the shell; the credentials file goes under tmp_path."""
    for key in list(os.environ):
        if key.upper().startswith("ATOLL_") and not key.upper().startswith("ATOLL_TEST_"):
            monkeypatch.delenv(key)
    config_home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    return config_home / "atoll" / "credentials.json"


@pytest.fixture
def url(live_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ATOLL_URL", live_url)
    return live_url


@pytest.fixture
def as_admin(url: str, admin: Caller, monkeypatch: pytest.MonkeyPatch) -> Caller:
    monkeypatch.setenv("ATOLL_TOKEN", admin.token)
    return admin


@pytest.fixture
def typed_password(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What `getpass.getpass` returns; set the first item before invoking."""
    typed = ["unset"]
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return typed[0]

    monkeypatch.setattr("atoll.cli.identity.getpass.getpass", fake_getpass)
    return typed


class TestHelp:
    def test_lists_every_command(self) -> None:
        result = atoll("--help")
        assert result.exit_code == 0, result.output
        for command in ("up", "server", "worker", "db", "login", "whoami", "users", "tokens"):
            assert f" {command} " in result.output, command

    @pytest.mark.parametrize(
        ("args", "command"), [((), "login"), (("tokens",), "revoke"), (("users",), "create")]
    )
    def test_no_arguments_shows_help(self, args: tuple[str, ...], command: str) -> None:
        result = atoll(*args)
        assert result.exit_code == 2  # click's usage exit code for no_args_is_help
        assert "Usage" in result.output and command in result.output


class TestLogin:
    def test_with_token_saves_credentials_0600(
        self, url: str, admin: Caller, cli_environment: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        result = atoll("login", "--token", admin.token)
        assert result.exit_code == 0, result.output
        assert "root" in result.stdout
        assert stat.S_IMODE(cli_environment.stat().st_mode) == 0o600
        assert json.loads(cli_environment.read_text()) == {"url": url, "token": admin.token}
        assert admin.token not in result.stdout

        # Later commands need neither ATOLL_TOKEN nor ATOLL_URL.
        monkeypatch.delenv("ATOLL_URL")
        who = ok_json("whoami")
        assert who["username"] == "root" and who["role"] == "admin"

    def test_with_password(
        self, url: str, make_caller: MakeCaller, typed_password: list[str], cli_environment: Path
    ) -> None:
        ada = make_caller("ada", Role.engineer)
        typed_password[0] = ada.password
        result = atoll("login", "-u", "ada")
        assert result.exit_code == 0, result.output
        saved = json.loads(cli_environment.read_text())
        assert saved["token"].startswith("atl_") and saved["token"] != ada.token
        who = ok_json("whoami")
        assert who["username"] == "ada"
        assert set(who["scopes"]) == {"read", "register", "deploy", "ingest"}
        names = [t["name"] for t in ok_json("tokens", "list")]
        assert any(name.startswith("cli-") for name in names)

    def test_username_prompted_when_not_given(
        self, url: str, make_caller: MakeCaller, typed_password: list[str], cli_environment: Path
    ) -> None:
        eng = make_caller("eng", Role.viewer)
        typed_password[0] = eng.password
        result = atoll("login", input="eng\n")
        assert result.exit_code == 0, result.output
        assert ok_json("whoami")["username"] == "eng"

    def test_wrong_password_exits_3_and_saves_nothing(
        self, url: str, make_caller: MakeCaller, typed_password: list[str], cli_environment: Path
    ) -> None:
        make_caller("ada", Role.engineer)
        typed_password[0] = "not-the-password"
        result = atoll("login", "-u", "ada")
        assert result.exit_code == 3, result.output
        assert not cli_environment.exists()

    def test_invalid_token_exits_3_and_saves_nothing(self, url: str, cli_environment: Path) -> None:
        result = atoll("login", "--token", "atl_" + "x" * 43)
        assert result.exit_code == 3, result.output
        assert not cli_environment.exists()

    def test_logging_in_twice_rotates_the_token(
        self,
        url: str,
        make_caller: MakeCaller,
        typed_password: list[str],
        cli_environment: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        ada = make_caller("ada", Role.engineer)
        typed_password[0] = ada.password
        assert atoll("login", "-u", "ada").exit_code == 0
        first = json.loads(cli_environment.read_text())["token"]
        second = atoll("login", "-u", "ada")
        assert second.exit_code == 0, second.output
        rotated = json.loads(cli_environment.read_text())["token"]
        assert rotated != first
        assert ok_json("whoami")["username"] == "ada"
        # The machine's old token is revoked, not left active beside the new one.
        states = [t["state"] for t in ok_json("tokens", "list") if t["name"].startswith("cli-")]
        assert sorted(states) == ["active", "revoked"]
        monkeypatch.setenv("ATOLL_TOKEN", first)
        assert atoll("whoami").exit_code == 3

    def test_existing_readable_file_becomes_0600(
        self, url: str, admin: Caller, cli_environment: Path
    ) -> None:
        cli_environment.parent.mkdir(parents=True)
        cli_environment.write_text("{}")
        cli_environment.chmod(0o644)
        assert atoll("login", "--token", admin.token).exit_code == 0
        assert stat.S_IMODE(cli_environment.stat().st_mode) == 0o600


class TestTokens:
    def test_created_secret_works_with_its_scopes(
        self, as_admin: Caller, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        created = ok_json("tokens", "create", "ci-bot", "--scope", "register")
        secret = created["token"]
        assert secret.startswith("atl_")
        assert created["scopes"] == ["register"] and created["name"] == "ci-bot"
        monkeypatch.setenv("ATOLL_TOKEN", secret)
        assert ok_json("whoami")["scopes"] == ["register"]

    def test_human_create_prints_the_secret_once(self, as_admin: Caller) -> None:
        result = atoll("tokens", "create", "deploy-bot", "-s", "deploy", "-s", "read")
        assert result.exit_code == 0, result.output
        secret = result.stdout.strip().splitlines()[-1]
        assert secret.startswith("atl_")
        assert result.stdout.count(secret) == 1

    def test_list_never_shows_secrets(self, as_admin: Caller) -> None:
        secret = ok_json("tokens", "create", "ci-bot", "--scope", "register")["token"]
        json_list = atoll("tokens", "list", "--json")
        human = atoll("tokens", "list")
        assert json_list.exit_code == 0 and human.exit_code == 0
        for output in (json_list.stdout, human.stdout):
            assert secret not in output
            assert as_admin.token not in output
        assert {t["name"] for t in json.loads(json_list.stdout)} == {"test", "ci-bot"}
        assert all("token" not in t for t in json.loads(json_list.stdout))

    def test_human_list_is_a_table_with_names(self, as_admin: Caller) -> None:
        ok_json("tokens", "create", "ci-bot", "--scope", "register")
        result = atoll("tokens", "list")
        assert result.exit_code == 0, result.output
        header = next(line for line in result.stdout.splitlines() if "name" in line)
        for column in ("id", "prefix", "scopes", "state", "expires"):
            assert column in header
        assert "ci-bot" in result.stdout
        assert "active" in result.stdout

    def test_revoke_stops_the_token(self, as_admin: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
        created = ok_json("tokens", "create", "short-lived", "--scope", "read")
        revoked = ok_json("tokens", "revoke", str(created["id"]))
        assert revoked["id"] == created["id"] and revoked["state"] == "revoked"
        monkeypatch.setenv("ATOLL_TOKEN", created["token"])
        result = atoll("whoami")
        assert result.exit_code == 3
        assert "revoked" in result.stderr

    def test_revoke_unknown_id_exits_4(self, as_admin: Caller) -> None:
        assert atoll("tokens", "revoke", "99999").exit_code == 4


class TestUsers:
    def test_create_with_prompted_password(
        self, as_admin: Caller, typed_password: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        typed_password[0] = "bob-password-123"
        user = ok_json("users", "create", "bob", "--role", "engineer")
        assert user["username"] == "bob" and user["role"] == "engineer"
        assert "password" not in json.dumps(user)
        listed = {u["username"]: u["role"] for u in ok_json("users", "list")}
        assert listed["bob"] == "engineer"

        # The password that was typed is the one that works.
        monkeypatch.delenv("ATOLL_TOKEN")
        assert atoll("login", "-u", "bob").exit_code == 0
        assert ok_json("whoami")["username"] == "bob"

    def test_create_with_password_from_stdin(
        self, as_admin: Caller, typed_password: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        typed_password[0] = "never-asked-for"
        result = atoll("users", "create", "carol", "--password-stdin", "--json", input="carol-password-123\n")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["username"] == "carol"
        monkeypatch.delenv("ATOLL_TOKEN")
        typed_password[0] = "carol-password-123"
        assert atoll("login", "-u", "carol").exit_code == 0
        assert ok_json("whoami")["username"] == "carol"

    def test_human_list(self, as_admin: Caller) -> None:
        result = atoll("users", "list")
        assert result.exit_code == 0, result.output
        assert "root" in result.stdout and "admin" in result.stdout

    def test_short_password_is_invalid_input(self, as_admin: Caller, typed_password: list[str]) -> None:
        typed_password[0] = "short"
        assert atoll("users", "create", "bob").exit_code == 2


class TestExitCodes:
    def test_no_token_exits_3(self, url: str) -> None:
        result = atoll("whoami")
        assert result.exit_code == 3
        assert "error:" in result.stderr

    def test_viewer_creating_a_user_exits_3(
        self, url: str, make_caller: MakeCaller, typed_password: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        viewer = make_caller("vic", Role.viewer)
        monkeypatch.setenv("ATOLL_TOKEN", viewer.token)
        typed_password[0] = "eve-password-123"
        result = atoll("users", "create", "eve", "--role", "admin")
        assert result.exit_code == 3, result.output
        assert "viewer" in result.stderr

    def test_duplicate_token_name_exits_5(self, as_admin: Caller) -> None:
        assert atoll("tokens", "create", "ci-bot", "-s", "register").exit_code == 0
        result = atoll("tokens", "create", "ci-bot", "-s", "register")
        assert result.exit_code == 5
        assert "ci-bot" in result.stderr

    def test_invalid_scope_exits_2(self, as_admin: Caller) -> None:
        result = atoll("tokens", "create", "ci-bot", "--scope", "everything")
        assert result.exit_code == 2, result.output
        assert ok_json("tokens", "list")[0]["name"] == "test"

    def test_unreachable_platform_exits_6(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("ATOLL_TOKEN", "atl_" + "x" * 43)
        result = atoll("whoami")
        assert result.exit_code == 6
        assert "cannot reach" in result.stderr


class TestDatabase:
    def test_upgrade_then_current(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        database = tmp_path / "fresh" / "atoll.db"
        database.parent.mkdir()
        monkeypatch.setenv("ATOLL_DATABASE_URL", f"sqlite:///{database}")
        monkeypatch.setenv("ATOLL_DATA_DIR", str(tmp_path / "data"))

        before = atoll("db", "current")
        assert before.exit_code == 0, before.output
        assert before.stdout.strip() == "empty"

        from alembic.script import ScriptDirectory

        from atoll.migrate import alembic_config

        head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
        assert head is not None
        upgraded = atoll("db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        assert head in upgraded.stdout
        assert database.exists()
        assert (tmp_path / "data").is_dir()

        current = atoll("db", "current")
        assert current.exit_code == 0, current.output
        assert current.stdout.strip() == head

    def test_invalid_setting_exits_2(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ATOLL_DATABSE_URL", "sqlite:///x.db")
        result = atoll("db", "current")
        assert result.exit_code == 2
        assert "ATOLL_DATABSE_URL" in result.stderr
