"""`stepforge admin`: projects, environments and tokens, managed on the
registry's host by whoever can read its data directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stepforge.services.config import DEFAULT_DATA_DIR
from stepforge.services.core.errors import ServiceError
from stepforge.services.registry.assembly import open_registry_database
from stepforge.services.registry.tenancy import (
    Tenancy,
    TokenInfo,
    default_container_config,
)
from stepforge.v1 import common_pb2

_LIMIT_FIELDS = ("memory_bytes", "cpu_seconds", "open_files", "output_bytes")


def add_admin_commands(commands: Any) -> None:
    """Adds `admin` and its subcommands to the `stepforge` parser."""
    admin = commands.add_parser(
        "admin", help="manage projects, environments and tokens on this host"
    )
    admin.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    admin.add_argument("--json", action="store_true", help="print JSON for scripts")
    kinds = admin.add_subparsers(dest="kind", required=True)

    projects = kinds.add_parser("projects").add_subparsers(dest="action", required=True)
    projects.add_parser("create").add_argument("project")
    projects.add_parser("list")

    environments = kinds.add_parser("environments").add_subparsers(
        dest="action", required=True
    )
    create = environments.add_parser("create")
    create.add_argument("project")
    create.add_argument("environment")
    environments.add_parser("list").add_argument("--project")
    limits = environments.add_parser(
        "set-limits", help="what each execution of the environment may use (0: default)"
    )
    limits.add_argument("project")
    limits.add_argument("environment")
    for name in _LIMIT_FIELDS:
        limits.add_argument(f"--{name.replace('_', '-')}", type=int, default=0)

    tokens = kinds.add_parser("tokens").add_subparsers(dest="action", required=True)
    token = tokens.add_parser(
        "create", help="a token for one environment, or a project's admin token"
    )
    token.add_argument("project")
    role = token.add_mutually_exclusive_group(required=True)
    role.add_argument("--environment")
    role.add_argument("--admin", action="store_true")
    token.add_argument("--label", default="")
    tokens.add_parser("list").add_argument("--project")
    tokens.add_parser("revoke").add_argument("token_id")


def run_admin(args: argparse.Namespace) -> int:
    database = open_registry_database(Path(args.data_dir).expanduser())
    try:
        result = _dispatch(Tenancy(database), args)
    except ServiceError as error:
        print(f"stepforge admin: {error.message}", file=sys.stderr)
        return 2
    finally:
        database.close()
    _print(result, as_json=args.json)
    return 0


def _dispatch(tenancy: Tenancy, args: argparse.Namespace) -> Any:
    action = (args.kind, args.action)
    if action == ("projects", "create"):
        tenancy.create_project(args.project, default_container_config())
        return {"project": args.project}
    if action == ("projects", "list"):
        return [{"project": name} for name in tenancy.list_projects()]
    if action == ("environments", "create"):
        created = tenancy.create_environment(args.project, args.environment)
        return {"project": created.project, "environment": created.name}
    if action == ("environments", "list"):
        return [
            {"project": item.project, "environment": item.name}
            for item in tenancy.list_environments(args.project)
        ]
    if action == ("environments", "set-limits"):
        environment = tenancy.get_environment(args.project, args.environment)
        limits = common_pb2.ExecutionLimits(
            **{name: getattr(args, name) for name in _LIMIT_FIELDS}
        )
        tenancy.set_limits(environment, limits)
        return {"project": args.project, "environment": args.environment} | {
            name: getattr(limits, name) for name in _LIMIT_FIELDS
        }
    if action == ("tokens", "create"):
        if args.admin:
            token = tenancy.create_admin_token(args.project, args.label)
        else:
            environment = tenancy.get_environment(args.project, args.environment)
            token = tenancy.create_token(environment, args.label)
        # The one time the token can be read: only its hash is kept.
        return {"token": token}
    if action == ("tokens", "list"):
        return [_token_row(info) for info in tenancy.list_tokens(args.project)]
    return _token_row(tenancy.revoke_token(args.token_id))


def _token_row(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "project": info.project,
        "role": "admin" if info.admin else "user",
        "environment": info.environment or "",
        "label": info.label,
        "created": info.create_time,
        "revoked": info.revoke_time or "",
    }


def _print(result: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    rows = result if isinstance(result, list) else [result]
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = [
        max(len(column), *(len(str(row[column])) for row in rows)) for column in columns
    ]
    print(
        "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths))
    )
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths)).rstrip())
