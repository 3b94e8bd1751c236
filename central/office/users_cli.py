"""``hall-central users``: the office's accounts (docs/office.md "Accounts").

- ``add NAME --role clerk|admin [--password-stdin]``: a new account.
- ``list``: the accounts, their roles and whether they are disabled.
- ``passwd NAME [--password-stdin]``: a new password; the account's open sessions end.
- ``disable NAME`` / ``enable NAME``: a disabled account cannot log in; its sessions end.

A password is read twice from the terminal (never echoed), or once from the first line of
stdin with ``--password-stdin`` (for scripts); never from the command line, where other users
of the host could read it in the process list. Every change is written to the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from central.config import CentralConfig
from sync.cli_common import CliError

ROLES = ("clerk", "admin")
BY = "shell"  # who the audit log names for a change made with this command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "users",
        help="accounts of the office's 差评 pages",
        description="Accounts of the office's pages for 差评 cases (docs/office.md): clerks "
        "handle cases, admins also read the audit log and the accounts.",
    )
    usub = p.add_subparsers(dest="users_command", metavar="ACTION")
    usub.required = True
    u = usub.add_parser(
        "add",
        help="add an account",
        description="Add an account; the password is asked twice on the terminal, or read "
        "from the first line of stdin with --password-stdin.",
    )
    u.add_argument("name", help="user name: lower-case letters, digits, '-' and '_'")
    u.add_argument("--role", required=True, choices=ROLES, help="clerk (cases) or admin")
    _password_option(u)
    usub.add_parser(
        "list",
        help="list the accounts",
        description="List the accounts with their role, creation time and state.",
    )
    u = usub.add_parser(
        "passwd",
        help="set an account's password",
        description="Set a new password; the account's open sessions end.",
    )
    u.add_argument("name", help="user name")
    _password_option(u)
    for action, text in (
        ("disable", "disable an account (it cannot log in; its sessions end)"),
        ("enable", "enable a disabled account again"),
    ):
        u = usub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        u.add_argument("name", help="user name")


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (for scripts)",
    )


def read_password(args: argparse.Namespace) -> str:
    from central.office.passwords import PasswordError, check_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CliError(
                f"users {args.users_command}: no terminal to ask the password on; "
                "use --password-stdin",
                2,
            )
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CliError(f"users {args.users_command}: the passwords differ; nothing changed")
    try:
        return check_password(password)
    except PasswordError as exc:
        raise CliError(f"users {args.users_command}: {exc}", 2) from None


def _name(args: argparse.Namespace) -> str:
    from central.office.passwords import PasswordError, check_name

    try:
        return check_name(args.name)
    except PasswordError as exc:
        raise CliError(f"users {args.users_command}: {exc}", 2) from None


def _store(cfg: CentralConfig, create: bool) -> Any:
    from central.commands import open_existing
    from central.store import open_store

    if not create:
        return open_existing(cfg)
    return open_store(
        cfg.store.url, cfg.store.pg_schema, cfg.store.password, timezone=cfg.central.timezone
    )


def cmd_users(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.office.passwords import hash_password
    from central.store.errors import StoreError

    action = args.users_command
    now = datetime.now(UTC)
    if action == "list":
        tz = ZoneInfo(cfg.central.timezone)
        with _store(cfg, create=False) as store:
            users = store.users()
        if not users:
            print("no accounts (add one: hall-central users add NAME --role admin)")
        for user in users:
            created = user.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            state = "disabled" if user.disabled else "active"
            print(f"{user.name}\t{user.role}\t{state}\tcreated {created}")
        return 0
    name = _name(args)
    if action == "add":
        with _store(cfg, create=True) as store:
            if store.user(name) is not None:  # asked before the password is typed
                raise CliError(f"users add: user {name!r} exists already")
            password = read_password(args)
            try:
                store.add_user(name, args.role, hash_password(password), now)
            except StoreError as exc:
                raise CliError(f"users add: {exc}") from None
        print(f"user {name} added ({args.role})")
        return 0
    with _store(cfg, create=False) as store:
        if store.user(name) is None:
            raise CliError(f"users {action}: no user {name!r}")
        if action == "passwd":
            changed = store.update_user(
                name, now, BY, password_hash=hash_password(read_password(args))
            )
            said = "password changed; open sessions end"
        else:
            changed = store.update_user(name, now, BY, disabled=action == "disable")
            said = "disabled; open sessions end" if action == "disable" else "enabled"
    if not changed:
        raise CliError(f"users {action}: no user {name!r}")
    print(f"user {name}: {said}")
    return 0
