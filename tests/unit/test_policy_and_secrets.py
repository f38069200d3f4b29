"""Roles and scopes, hashing of passwords and tokens, and secrets kept out of the logs."""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.auth.policy import ROLE_SCOPES, Principal, Role, Scope, lowest_role_with
from atoll.auth.secrets import (
    TOKEN_PREFIX,
    constant_time_equal,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)
from atoll.context import request_id_var
from atoll.logs import JsonFormatter, TextFormatter, redact


def _principal(role: Role, scopes: set[Scope] | None = None) -> Principal:
    return Principal(
        user_id=1,
        username="someone",
        role=role,
        scopes=frozenset(ROLE_SCOPES[role] if scopes is None else scopes),
        via="token",
    )


class TestRoles:
    def test_ranks_follow_declaration_order(self) -> None:
        assert [role.rank for role in Role] == [0, 1, 2, 3]
        assert Role.viewer.rank < Role.engineer.rank < Role.approver.rank < Role.admin.rank

    def test_every_role_has_scopes(self) -> None:
        assert set(ROLE_SCOPES) == set(Role)
        assert ROLE_SCOPES[Role.viewer] == {Scope.read}
        assert ROLE_SCOPES[Role.admin] == set(Scope)

    def test_higher_roles_hold_every_lower_scope(self) -> None:
        for lower, higher in itertools.combinations(Role, 2):
            assert lower.rank < higher.rank
            assert ROLE_SCOPES[lower] <= ROLE_SCOPES[higher], (lower, higher)

    def test_promote_needs_approver_and_admin_needs_admin(self) -> None:
        assert lowest_role_with(Scope.read) is Role.viewer
        assert lowest_role_with(Scope.register) is Role.engineer
        assert lowest_role_with(Scope.promote) is Role.approver
        assert lowest_role_with(Scope.admin) is Role.admin


class TestPrincipalMissing:
    def test_allowed_scope_is_none(self) -> None:
        principal = _principal(Role.engineer)
        assert principal.missing(Scope.deploy) is None
        assert principal.can(Scope.deploy)

    def test_role_too_low_names_the_lowest_role_with_the_scope(self) -> None:
        message = _principal(Role.engineer).missing(Scope.promote)
        assert message is not None
        assert "`promote`" in message
        assert "approver" in message
        assert "you are engineer" in message

    def test_viewer_asking_for_admin(self) -> None:
        message = _principal(Role.viewer).missing(Scope.admin)
        assert message is not None
        assert "role admin" in message and "you are viewer" in message

    def test_token_lacking_scope_lists_what_it_holds(self) -> None:
        principal = _principal(Role.admin, {Scope.register, Scope.deploy})
        message = principal.missing(Scope.read)
        assert message is not None
        assert "`read`" in message
        assert "deploy, register" in message
        assert not principal.can(Scope.read)

    def test_token_with_no_scopes(self) -> None:
        message = _principal(Role.admin, set()).missing(Scope.read)
        assert message is not None
        assert message.endswith("none")

    def test_role_check_comes_before_token_check(self) -> None:
        # A token cannot carry more than the owner's current role: the role message wins.
        principal = _principal(Role.viewer, {Scope.read, Scope.admin})
        message = principal.missing(Scope.admin)
        assert message is not None and "you are viewer" in message


class TestPasswords:
    def test_verifies_right_and_rejects_wrong(self) -> None:
        stored = hash_password("correct horse battery")
        assert verify_password(stored, "correct horse battery")
        assert not verify_password(stored, "correct horse battery ")
        assert not verify_password(stored, "")

    def test_is_argon2id_and_salted(self) -> None:
        first, second = hash_password("same password"), hash_password("same password")
        assert first.startswith("$argon2id$")
        assert first != second
        assert "same password" not in first
        assert verify_password(second, "same password")

    def test_garbage_hash_is_a_mismatch_not_a_crash(self) -> None:
        assert not verify_password("not-a-hash", "anything")


class TestTokens:
    def test_prefix_and_length(self) -> None:
        token = new_token()
        assert token.startswith("atl_") and TOKEN_PREFIX == "atl_"
        assert re.fullmatch(r"atl_[A-Za-z0-9_-]{43}", token)

    def test_unique(self) -> None:
        assert len({new_token() for _ in range(1000)}) == 1000

    def test_hash_is_sha256_hex_and_deterministic(self) -> None:
        token = new_token()
        digest = hash_token(token)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert hash_token(token) == digest
        assert hash_token(new_token()) != digest
        assert token not in digest

    def test_constant_time_equal(self) -> None:
        assert constant_time_equal("abc", "abc")
        assert not constant_time_equal("abc", "abd")
        assert not constant_time_equal("abc", "abcd")


SECRET = "atl_" + "A1b2C3d4" * 5


class TestRedact:
    @pytest.mark.parametrize(
        "key", ["password", "new_Password", "client_secret", "token", "Authorization", "Cookie", "set-cookie"]
    )
    def test_secret_keys_are_hidden(self, key: str) -> None:
        assert redact({key: "hunter2", "user": "bob"}) == {key: "[redacted]", "user": "bob"}

    def test_nested_dicts_and_lists(self) -> None:
        value = {
            "request": {"headers": {"authorization": "Bearer x", "accept": "json"}},
            "items": [{"password": "p", "name": "a"}, ("plain", {"secret": 1})],
        }
        assert redact(value) == {
            "request": {"headers": {"authorization": "[redacted]", "accept": "json"}},
            "items": [{"password": "[redacted]", "name": "a"}, ["plain", {"secret": "[redacted]"}]],
        }

    def test_token_inside_free_text(self) -> None:
        text = f"calling with {SECRET}, then {new_token()}."
        redacted = redact(text)
        assert SECRET not in redacted and "atl_" in redacted
        assert redacted.startswith("calling with atl_[redacted], then atl_[redacted]")

    def test_token_in_a_list_under_a_harmless_key(self) -> None:
        assert SECRET not in json.dumps(redact({"args": [f"--token={SECRET}"]}))

    def test_other_values_unchanged(self) -> None:
        assert redact({"count": 3, "ratio": 0.5, "none": None, "name": "atl_short"}) == {
            "count": 3,
            "ratio": 0.5,
            "none": None,
            "name": "atl_short",
        }


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("atoll.tests.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    lines = stream.getvalue().splitlines()
    return [json.loads(line) for line in lines]


class TestJsonFormatter:
    def test_one_json_line_with_extras(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        logger.info("model %s registered", "churn", extra={"model": "churn", "version": 3})
        [entry] = _lines(stream)
        assert entry["msg"] == "model churn registered"
        assert entry["level"] == "info"
        assert entry["logger"] == "atoll.tests.logs"
        assert entry["model"] == "churn" and entry["version"] == 3
        assert "request_id" not in entry
        assert str(entry["ts"]).endswith("+00:00")

    def test_request_id_from_context(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        reset = request_id_var.set("req-42")
        try:
            logger.warning("inside a request")
        finally:
            request_id_var.reset(reset)
        logger.warning("outside")
        inside, outside = _lines(stream)
        assert inside["request_id"] == "req-42"
        assert "request_id" not in outside

    def test_multiline_message_stays_one_line(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        logger.error("first\nsecond")
        assert stream.getvalue().count("\n") == 1
        assert _lines(stream)[0]["msg"] == "first\nsecond"

    def test_token_secret_never_logged(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        logger.info(
            "issued %s",
            SECRET,
            extra={"token": SECRET, "note": f"bearer {SECRET}", "headers": {"authorization": SECRET}},
        )
        output = stream.getvalue()
        assert SECRET not in output
        [entry] = _lines(stream)
        assert entry["token"] == "[redacted]"
        assert entry["note"] == "bearer atl_[redacted]"
        assert entry["msg"] == "issued atl_[redacted]"

    def test_non_json_extras_are_stringified(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        logger.info("odd", extra={"where": Path("/srv/atoll")})
        assert _lines(stream)[0]["where"] == "/srv/atoll"

    def test_token_in_exception_is_redacted(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        try:
            raise ValueError(f"bad token {SECRET}")
        except ValueError:
            logger.exception("failed")
        assert SECRET not in stream.getvalue()


class TestTextFormatter:
    def test_redacts_too(self) -> None:
        record = logging.LogRecord("atoll.x", logging.INFO, __file__, 1, "sent %s", (SECRET,), None)
        record.token = SECRET
        line = TextFormatter().format(record)
        assert SECRET not in line
        assert "token=[redacted]" in line and line.startswith("info")
