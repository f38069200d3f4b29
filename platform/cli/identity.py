"""Commands about who you are: login, whoami, users, tokens."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer

from atoll.cli.output import JsonFlag, client, client_errors, console, emit_json, table

users_app = typer.Typer(help="Users (admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for the CLI and CI.", no_args_is_help=True)


def login(
    url: Annotated[str | None, typer.Option(envvar="ATOLL_URL", help="Atoll's URL")] = None,
    token: Annotated[str | None, typer.Option(help="An existing token (else: username/password)")] = None,
    username: Annotated[str | None, typer.Option("--username", "-u")] = None,
) -> None:
    """Sign in and save a token to the credentials file (0600)."""
    from atoll.client import Client, save_credentials

    api = Client.from_environment(url=url)
    with client_errors():
        if token is None:
            name = username or typer.prompt("username")
            password = getpass.getpass("password: ")
            import socket

            issued = api.post(
                "/api/v1/auth/token",
                {
                    "username": name,
                    "password": password,
                    "token_name": f"cli-{socket.gethostname()}"[:64].lower(),
                },
            )
            token = issued["token"]
        who = Client(api.url, token).get("/api/v1/whoami")
    path = save_credentials(api.url, token)
    console.print(
        f"signed in to {api.url} as [bold]{who['username']}[/] ({who['role']}); token saved in {path}"
    )


def whoami(as_json: JsonFlag = False) -> None:
    """Show the user and scopes the current token acts as."""
    with client_errors():
        who = client().get("/api/v1/whoami")
    if as_json:
        emit_json(who)
    else:
        console.print(
            f"{who['username']} ({who['role']}) via {who['via']}; scopes: {', '.join(who['scopes'])}"
        )


@users_app.command("list")
def users_list(as_json: JsonFlag = False) -> None:
    """List users."""
    with client_errors():
        users = client().get("/api/v1/users")
    if as_json:
        emit_json(users)
        return
    table(
        users,
        [
            ("username", "username"),
            ("role", "role"),
            ("teams", lambda u: ", ".join(u["teams"])),
            ("active", "is_active"),
        ],
    )


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, engineer, approver or admin")] = "viewer",
    team: Annotated[list[str] | None, typer.Option(help="Team to join (repeatable)")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a user (asks for the password)."""
    secret = (
        sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass(f"password for {username}: ")
    )
    body: dict[str, Any] = {
        "username": username,
        "password": secret,
        "role": role,
        "teams": team or [],
    }
    if email:
        body["email"] = email
    with client_errors():
        user = client().post("/api/v1/users", body)
    if as_json:
        emit_json(user)
    else:
        console.print(f"created user [bold]{user['username']}[/] ({user['role']})")


def _token_columns() -> list[tuple[str, Any]]:
    return [
        ("id", "id"),
        ("name", "name"),
        ("prefix", "prefix"),
        ("scopes", lambda t: ", ".join(t["scopes"])),
        ("state", "state"),
        ("expires", lambda t: (t["expires_at"] or "never")[:10]),
    ]


@tokens_app.command("create")
def tokens_create(
    name: str,
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="read, register, deploy, promote, ingest, admin"),
    ],
    expires_in_days: Annotated[int | None, typer.Option(help="Days until it expires")] = 90,
    never_expires: Annotated[bool, typer.Option(help="No expiry")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a token. It is printed once: store it now."""
    body = {
        "name": name,
        "scopes": scope,
        "expires_in_days": None if never_expires else expires_in_days,
    }
    with client_errors():
        created = client().post("/api/v1/tokens", body)
    if as_json:
        emit_json(created)
        return
    console.print(f"token [bold]{created['name']}[/] ({', '.join(created['scopes'])}) — shown once:")
    typer.echo(created["token"])


@tokens_app.command("list")
def tokens_list(
    all_users: Annotated[bool, typer.Option("--all", help="Every user's (admin)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List your tokens (never their secrets)."""
    with client_errors():
        tokens = client().get("/api/v1/tokens", all_users=all_users or None)
    if as_json:
        emit_json(tokens)
    else:
        table(tokens, _token_columns())


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, as_json: JsonFlag = False) -> None:
    """Revoke a token by id; anything using it stops working at once."""
    with client_errors():
        token = client().delete(f"/api/v1/tokens/{token_id}")
    if as_json:
        emit_json(token)
    else:
        console.print(f"revoked token {token['id']} ({token['name']})")


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(whoami)
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
