"""The ``collab`` command: run the services, mint tokens, print the version.

Each sub-command imports its service lazily, so ``collab token`` works without the
server dependencies being imported and a service's start-up cost is paid only by it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from collab_core.auth import Role, TokenCodec


def _version() -> str:
    try:
        return metadata.version("gremlins-collab")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _cmd_token(args: argparse.Namespace) -> int:
    secret = os.environ.get("COLLAB_JWT_SECRET")
    if not secret:
        print("collab token: COLLAB_JWT_SECRET is not set", file=sys.stderr)
        return 2
    try:
        codec = TokenCodec(secret)
    except ValueError as exc:
        print(f"collab token: COLLAB_JWT_SECRET: {exc}", file=sys.stderr)
        return 2
    token = codec.mint(
        sub=args.user,
        name=args.name or args.user,
        doc=args.doc,
        role=args.role,
        now=time.time(),
        ttl_seconds=args.ttl,
    )
    print(token)
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    # Imported here: each service pays only for its own imports.
    if args.command == "gateway":
        from collab_gateway.__main__ import main as service_main
    elif args.command == "transform":
        from collab_transform.__main__ import main as service_main
    elif args.command == "operator":
        from collab_operator.main import main as service_main
    else:
        from collab_presence.__main__ import main as service_main
    service_main()
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from collab_cli import up

    return up.run(
        port=args.port,
        data_dir=Path(args.data_dir),
        appendfsync=args.appendfsync,
        redis_cluster=args.redis_cluster,
    )


def _cluster_masters(text: str) -> int:
    """``--redis-cluster N``: Redis Cluster refuses to form with fewer than 3 masters."""
    try:
        masters = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of masters: {text!r}") from None
    if masters < 3:
        raise argparse.ArgumentTypeError(f"a Redis Cluster needs at least 3 masters, not {masters}")
    return masters


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab",
        description="Real-time collaborative text editing backend.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run the whole system locally (embedded Redis, every service; insecure dev mode)",
    )
    up.add_argument("--port", type=int, default=8000, help="gateway port (8000)")
    up.add_argument("--data-dir", default=".collab", help="where everything is stored (./.collab)")
    up.add_argument(
        "--appendfsync",
        choices=["always", "everysec", "no"],
        default="always",
        help="Redis AOF fsync policy; 'always' (default) makes every ack durable",
    )
    up.add_argument(
        "--redis-cluster",
        type=_cluster_masters,
        metavar="N",
        help="instead of the single Redis, a local Redis Cluster of N >= 3 masters with a "
        "replica each (data in <data-dir>/redis-cluster; overrides REDIS_URL); the services "
        "get its redis+cluster:// URL",
    )
    up.set_defaults(run=_cmd_up)

    for name, text in (
        ("gateway", "run the WebSocket gateway (settings from COLLAB_GATEWAY_* and REDIS_URL)"),
        ("transform", "run edit-transform (settings from COLLAB_TRANSFORM_*)"),
        ("presence", "run presence (settings from COLLAB_PRESENCE_*)"),
        ("operator", "run the operator that scales the gateways (settings from COLLAB_OPERATOR_*)"),
    ):
        commands.add_parser(name, help=text).set_defaults(run=_cmd_service)

    token = commands.add_parser(
        "token", help="mint an access token with the secret in COLLAB_JWT_SECRET"
    )
    token.add_argument("--user", required=True, help="user id (the 'sub' claim)")
    token.add_argument("--name", help="display name (defaults to the user id)")
    token.add_argument("--doc", default="*", help="document id, or '*' for any (default)")
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.EDITOR.value)
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (3600)")
    token.set_defaults(run=_cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
