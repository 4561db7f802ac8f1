"""The ``vareon`` command: run, init, user, db, bench (and the subcommands components add)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .version import __version__
from .errors import VareonError

if TYPE_CHECKING:
    from .auth import Auth
    from .config import Config
    from .store.copy import Comparison

T = TypeVar("T")

__all__ = ["BENCHMARK_GROUP", "COMMAND_GROUP", "main"]

BENCHMARK_GROUP = "vareon.benchmarks"
COMMAND_GROUP = "vareon.commands"
"""Entry points that add subcommands: ``(subparsers) -> None``, setting ``func`` on their parser."""

log = logging.getLogger("vareon.cli")


def _cmd_run(args: argparse.Namespace) -> int:
    import trio

    from .config import load_config
    from .logs import configure_logging
    from .runtime import Runtime, run_until_signal

    config = load_config(_existing_config(args.config))
    _require_driver(config.database_url)
    configure_logging(config.runtime.log_level, config.runtime.log_format)
    trio.run(run_until_signal, Runtime(config))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from .config import load_config, write_default_config

    path = write_default_config(args.config)
    config = load_config(path)
    print(f"wrote {path}\ndata directory {config.data_dir_path}\nstart it with: vareon run --config {path}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    points = {point.name: point for point in entry_points(group=BENCHMARK_GROUP)}
    if args.name not in points:
        known = ", ".join(sorted(points)) or "none installed"
        raise VareonError(f"no benchmark named {args.name!r}; known: {known}")
    bench = points[args.name].load()
    return int(bench(output_dir=Path(args.output), quick=args.quick) or 0)


def _cmd_user_create(args: argparse.Namespace) -> int:
    from .auth import Role

    config = _load_for_command(args.config)
    password = _read_password(args.password_env)
    role = Role(args.role)

    async def create(auth: Auth) -> str:
        user = await auth.create_user(args.username, args.email, password, role, verified=True)
        return f"created {user.role.value} {user.username} (id {user.id})"

    print(_with_auth(config, create))
    return 0


def _cmd_user_verify(args: argparse.Namespace) -> int:
    config = _load_for_command(args.config)

    async def verify(auth: Auth) -> str:
        user = await auth.mark_verified(args.username)
        return f"verified the email of {user.username}" + (f" ({user.email})" if user.email else "")

    print(_with_auth(config, verify))
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    config = _load_for_command(args.config)
    password = _read_password(args.password_env, confirm=False)

    async def sign_in(auth: Auth) -> str:
        # The same sign-in as POST /api/token, on the same store and JWT key (the data directory):
        # a running runtime admits the token.
        pair = await auth.login(args.username, password, None)
        return pair.access_token

    print(_with_auth(config, sign_in))
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    import trio

    from .watch import watch_device, watch_topics

    if bool(args.topics) == (args.device is not None):
        raise VareonError("give topics (say 'agent.*') or --device ID, not both, not neither")
    token = os.environ.get(args.token_env)
    if not token:
        raise VareonError(
            f"{args.token_env} is not set; export {args.token_env}=$(vareon token USER --password-env VAR)"
        )
    base = args.url or _local_url(args.config)
    out, err = sys.stdout, sys.stderr
    if args.device is not None:
        return trio.run(lambda: watch_device(base, token, args.device, count=args.count, out=out, err=err))
    return trio.run(lambda: watch_topics(base, token, args.topics, count=args.count, out=out, err=err))


def _local_url(config_path: str) -> str:
    """The configured runtime's address, as this machine reaches it (a wildcard is loopback)."""
    server = _load_for_command(config_path).server
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(server.host, server.host)
    return f"http://[{host}]:{server.port}" if ":" in host else f"http://{host}:{server.port}"


def _load_for_command(path: str) -> Config:
    from .config import load_config
    from .logs import configure_logging

    config = load_config(_existing_config(path))
    # Warnings only: the command's own output is its result line.
    configure_logging("warning", config.runtime.log_format)
    return config


def _read_password(variable: str | None, *, confirm: bool = True) -> str:
    """A password: from the named variable, a prompt (twice when ``confirm``), or one stdin line."""
    if variable is not None:
        value = os.environ.get(variable)
        if not value:
            raise VareonError(f"--password-env names {variable}, which is not set or empty")
        return value
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if confirm and getpass.getpass("password again: ") != first:
            raise VareonError("the two passwords differ; nothing was created")
        return first
    line = sys.stdin.readline()
    if not line:
        raise VareonError(
            "no password: stdin is empty; pipe one line, use a terminal, or pass --password-env VAR"
        )
    return line.rstrip("\r\n")


def _with_auth(config: Config, action: Callable[[Auth], Awaitable[T]]) -> T:
    """Open the store on the configured database (migrated), run ``action``, close the store."""
    import outcome
    import trio

    from .auth import Auth
    from .runtime import store_for

    async def session() -> T:
        store = store_for(config)
        auth = Auth(config, store)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            try:
                result = await outcome.acapture(action, auth)
            finally:
                await store.close()
        # Outside the nursery, so a refusal reaches main() as itself, not in an ExceptionGroup.
        return result.unwrap()

    try:
        return trio.run(session)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], VareonError):
            raise group.exceptions[0] from None  # say, the database could not be opened
        raise


def _require_driver(url: str) -> None:
    """Refuse, naming the install command, a database whose driver is missing (psycopg)."""
    from .store.engine import check_driver

    check_driver(url)


def _db_url(given: str | None, config_path: str) -> str:
    """``given``, else the configured store's URL (``[database] url`` or the SQLite file)."""
    if given is None:
        given = _load_for_command(config_path).database_url
    else:
        from .logs import configure_logging

        configure_logging("warning", "plain")
    _require_driver(given)
    return given


def _cmd_db_check(args: argparse.Namespace) -> int:
    from .store.check import check_store

    print("\n".join(check_store(_db_url(args.url, args.config)).lines()))
    return 0


def _cmd_db_copy(args: argparse.Namespace) -> int:
    from .store.copy import copy_store
    from .store.engine import shown_url

    source = _db_url(args.source, args.config)
    _require_driver(args.to)
    print(f"copying {shown_url(source)}\n   into {shown_url(args.to)}", flush=True)
    printed: dict[str, int] = {}

    def progress(table: str, done: int, total: int) -> None:
        # A line each time a table passes a tenth, and at its end: a long copy is seen moving.
        step = 10 if total == 0 else done * 10 // total
        if printed.get(table, 0 if total else -1) == step:
            return
        printed[table] = step
        print(f"  {table}: {done}/{total} rows", flush=True)

    comparison = copy_store(source, args.to, batch_size=args.batch_size, progress=progress)
    _print_comparison(comparison)
    if not comparison.ok:
        print(
            f"vareon: error: verification failed for {', '.join(t.name for t in comparison.mismatched)};"
            " the target was rolled back (nothing of the copy was kept), the source was not changed",
            file=sys.stderr,
        )
        return 1
    tables = len(comparison.tables) - 1  # Alembic's version table is made by the migrations
    print(
        f"copied {comparison.rows} rows in {tables} tables at revision {', '.join(comparison.revisions)};"
        " every table's row count and checksum match.\n"
        "The source was not changed. To run on the copy, set [database] url (or VAREON_DATABASE_URL)"
        f" to {shown_url(args.to)} and start the runtime; `vareon db verify` compares the two again."
    )
    return 0


def _cmd_db_verify(args: argparse.Namespace) -> int:
    from .store.copy import verify_stores

    source = _db_url(args.source, args.config)
    _require_driver(args.to)
    comparison = verify_stores(source, args.to, batch_size=args.batch_size)
    _print_comparison(comparison)
    if not comparison.ok:
        print(f"vareon: error: {', '.join(t.name for t in comparison.mismatched)} differ", file=sys.stderr)
        return 1
    print(f"{comparison.rows} rows in {len(comparison.tables) - 1} tables: the same in both")
    return 0


def _print_comparison(comparison: Comparison) -> None:
    """Each table's rows and checksum on both sides (checksums shortened to 16 digits)."""
    width = max(len(t.name) for t in comparison.tables)
    print(f"{'table':<{width}}  {'source':>10}  {'target':>10}  checksum (sha256)")
    for t in comparison.tables:
        if t.ok:
            verdict = f"{t.source_checksum[:16]}  ok"
        else:
            verdict = (
                f"{t.source_checksum[:16] or '-':<16} / {t.target_checksum[:16] or '-':<16}"
                f"  DIFFERS: {t.difference}"
            )
        print(f"{t.name:<{width}}  {t.source_rows:>10}  {t.target_rows:>10}  {verdict}")


def _cmd_backup(args: argparse.Namespace) -> int:
    from .backup import backup

    config = _load_for_command(args.config)
    result = backup(config, Path(args.path), force=args.force)
    database = result.manifest["database"]
    files = result.manifest["files"]
    size = sum(entry["size"] for entry in files)
    print(f"wrote {result.path}: {len(files)} files, {size} bytes")
    if result.database_included:
        revisions = ", ".join(f"{name} {revision}" for name, revision in sorted(database["revisions"].items()))
        print(f"the store: a consistent copy ({database['pages']} pages, quick_check ok); schema: {revisions}")
    for line in result.advice:
        print(line)
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from .backup import restore

    config = _load_for_command(args.config)
    result = restore(config, Path(args.path), force=args.force)
    print(f"restored the store to {result.database} and {len(result.files)} data files")
    for kept in result.kept:
        print(f"kept what was there as {kept}")
    if result.pending:
        print(f"the backup is older than this installation: {', '.join(result.pending)} will be migrated when the runtime starts")
    print(f"start it with: vareon run --config {args.config}")
    return 0


def _backup_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vareon backup PATH`` and ``vareon restore PATH``."""
    config_help = "path of config.toml (default: %(default)s)"
    made = commands.add_parser(
        "backup",
        help="write a consistent copy of the store and the data files, also while the runtime runs",
        description=(
            "Copy the SQLite store (SQLite's online backup API: one consistent snapshot, also"
            " while the runtime writes) and the data directory's files (uploads left out) into"
            " PATH: a .tar.gz or .tgz file, or a directory, with a manifest of versions, schema"
            " revisions, sizes and sha256. For a PostgreSQL store the pg_dump command is printed."
        ),
    )
    made.add_argument("path", help="where to write it: box.tar.gz, or a directory")
    made.add_argument("--config", default="config.toml", help=config_help)
    made.add_argument("--force", action="store_true", help="replace PATH if it exists")
    made.set_defaults(func=_cmd_backup)

    back = commands.add_parser(
        "restore",
        help="put a backup back in place of the store (the runtime stopped)",
        description=(
            "Check a backup (every sha256), refuse one whose schema is newer than this"
            " installation, refuse while the runtime runs, then put its store and data files in"
            " place. An existing store or file is replaced only with --force and kept beside as"
            " <name>.before-restore."
        ),
    )
    back.add_argument("path", help="the backup: a .tar.gz or a directory made by `vareon backup`")
    back.add_argument("--config", default="config.toml", help=config_help)
    back.add_argument("--force", action="store_true", help="replace the existing store (kept as *.before-restore)")
    back.set_defaults(func=_cmd_restore)


def _cmd_service(args: argparse.Namespace) -> int:
    from .service import Service

    service = Service.here(name=args.name)
    if args.service_command == "install":
        config = _existing_config(args.config).resolve()
        stop_timeout = _load_for_command(str(config)).runtime.shutdown_timeout
        lines = service.install(config, dry_run=args.dry_run, force=args.force, stop_timeout=stop_timeout)
    elif args.service_command == "uninstall":
        lines = service.uninstall(dry_run=args.dry_run)
    else:
        state = service.status()
        print(state.line())
        return 0 if state.running else 3
    print("\n".join(lines))
    return 0


def _service_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vareon service install|status|uninstall``."""
    service = commands.add_parser(
        "service",
        help="start the runtime at boot: a systemd unit, or a Termux:Boot script",
        description=(
            "install writes and enables a systemd unit (a system unit as root, run as the user"
            " who called sudo; a --user unit otherwise), restarted on failure, or on Termux a"
            " Termux:Boot script; status says whether it runs; uninstall stops and removes it."
        ),
    )
    actions = service.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="write and enable the unit (or the boot script)")
    install.add_argument("--config", default="config.toml", help="the config it runs with (default: %(default)s)")
    install.add_argument("--dry-run", action="store_true", help="print what it would write and run, change nothing")
    install.add_argument("--force", action="store_true", help="replace a different unit of the same name")
    install.add_argument("--name", default="vareon", help="the unit's name (default: %(default)s)")
    install.set_defaults(func=_cmd_service)
    status = actions.add_parser("status", help="whether it runs (systemctl is-active, or the boot script's pid)")
    status.add_argument("--name", default="vareon", help="the unit's name (default: %(default)s)")
    status.set_defaults(func=_cmd_service)
    uninstall = actions.add_parser("uninstall", help="stop, disable and remove it")
    uninstall.add_argument("--dry-run", action="store_true", help="print what it would run, change nothing")
    uninstall.add_argument("--name", default="vareon", help="the unit's name (default: %(default)s)")
    uninstall.set_defaults(func=_cmd_service)


def _existing_config(path: str) -> Path:
    candidate = Path(path)
    if not candidate.exists():
        raise VareonError(
            f"config file {candidate} does not exist; create one with `vareon init --config {candidate}`"
        )
    return candidate


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with the subcommands of installed components."""
    parser = argparse.ArgumentParser(prog="vareon", description="Vareon Runtime")
    parser.add_argument("--version", action="version", version=f"vareon-runtime {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="start the runtime and serve until SIGINT/SIGTERM")
    run.add_argument("--config", default="config.toml", help="path of config.toml (default: %(default)s)")
    run.set_defaults(func=_cmd_run)

    init = commands.add_parser("init", help="write a commented config.toml and create the data directory")
    init.add_argument("--config", default="config.toml", help="where to write it (default: %(default)s)")
    init.set_defaults(func=_cmd_init)

    user = commands.add_parser("user", help="manage accounts: create, verify")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create = user_commands.add_parser(
        "create",
        help="create an account (the first admin, say)",
        description=(
            "Create an account with a verified email. The password comes from the environment"
            " variable named by --password-env, else from a prompt (asked twice), else from one"
            " line of stdin; never from the command line."
        ),
    )
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    create.add_argument("--email", default=None, help="the account's email address (optional)")
    create.add_argument(
        "--password-env", metavar="VAR", default=None, help="environment variable holding the password"
    )
    create.add_argument("--config", default="config.toml", help="path of config.toml (default: %(default)s)")
    create.set_defaults(func=_cmd_user_create)
    verify = user_commands.add_parser("verify", help="mark an account's email as verified")
    verify.add_argument("username")
    verify.add_argument("--config", default="config.toml", help="path of config.toml (default: %(default)s)")
    verify.set_defaults(func=_cmd_user_verify)

    _token_parser(commands)
    _watch_parser(commands)
    _db_parser(commands)

    _backup_parsers(commands)
    _service_parser(commands)

    bench = commands.add_parser("bench", help="run a benchmark, print it and write JSON")
    bench.add_argument("name", help="kernel, http, agents, telemetry, scheduler (whichever are installed)")
    bench.add_argument("--output", default="bench-results", help="directory for the JSON result (default: %(default)s)")
    bench.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    bench.set_defaults(func=_cmd_bench)

    for point in sorted(entry_points(group=COMMAND_GROUP), key=lambda p: p.name):
        point.load()(commands)
    return parser


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vareon token USER``."""
    token = commands.add_parser(
        "token",
        help="sign in as a user and print an access token",
        description=(
            "Sign in as USER against the configured store and print an access token, for"
            " `Authorization: Bearer <token>`; it works while the runtime runs (the same store and"
            " JWT key) and expires after [auth] access_token_ttl seconds (15 minutes by default)."
            " The password comes from the variable named by --password-env, else from a prompt,"
            " else from one line of stdin; never from the command line."
        ),
    )
    token.add_argument("username")
    token.add_argument(
        "--password-env", metavar="VAR", default=None, help="environment variable holding the password"
    )
    token.add_argument("--config", default="config.toml", help="path of config.toml (default: %(default)s)")
    token.set_defaults(func=_cmd_token)


def _watch_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vareon watch TOPIC... | --device ID``."""
    watch = commands.add_parser(
        "watch",
        help="print live events of topics (or a device's telemetry), one JSON object a line",
        description=(
            "Connect to the runtime's WebSocket and print each event, one JSON object a line, until"
            " --count events or Ctrl-C. Topics are patterns: agent.<id>.status, agent.*, * (the"
            " list: docs/websocket.md). --device ID follows one device's telemetry stream instead."
            " The access token comes from the variable named by --token-env."
        ),
    )
    watch.add_argument("topics", nargs="*", metavar="TOPIC", help="a topic or pattern to subscribe to")
    watch.add_argument("--device", metavar="ID", default=None, help="a device's telemetry and status instead of topics")
    watch.add_argument("--count", type=int, default=None, metavar="N", help="stop after N events")
    watch.add_argument(
        "--token-env", metavar="VAR", default="TOKEN", help="variable holding the access token (default: %(default)s)"
    )
    watch.add_argument("--url", default=None, help="the runtime's address (default: from --config, e.g. http://127.0.0.1:8000)")
    watch.add_argument("--config", default="config.toml", help="path of config.toml (default: %(default)s)")
    watch.set_defaults(func=_cmd_watch)


def _db_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vareon db check|copy|verify``."""
    db = commands.add_parser("db", help="the store: check it, copy it to another database, verify a copy")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    config_help = "path of config.toml, whose store is the default (default: %(default)s)"
    batch_help = "rows per batch (default: %(default)s)"

    check = actions.add_parser(
        "check",
        help="revision, pending migrations, rows per table and size of the store",
        description="Report on the store without changing it; safe while the runtime runs.",
    )
    check.add_argument("--url", default=None, help="a database URL instead of the configured store")
    check.add_argument("--config", default="config.toml", help=config_help)
    check.set_defaults(func=_cmd_db_check)

    copy = actions.add_parser(
        "copy",
        help="copy the stopped store into an empty database and verify it",
        description=(
            "Copy every table of the store (SQLite to PostgreSQL, or back) into an empty database,"
            " migrated to the store's revision, then compare row counts and checksums of every"
            " table and keep the copy only if all match. The runtime must be stopped. The source"
            " is never changed. A password is best kept out of the URL: libpq reads PGPASSWORD"
            " and ~/.pgpass."
        ),
    )
    copy.add_argument(
        "--to", required=True, metavar="URL", help="the empty target, e.g. postgresql+psycopg://vareon@127.0.0.1/vareon"
    )
    copy.add_argument("--from", dest="source", default=None, metavar="URL", help="the source (default: the configured store)")
    copy.add_argument("--config", default="config.toml", help=config_help)
    copy.add_argument("--batch-size", type=_at_least_one, default=1000, metavar="N", help=batch_help)
    copy.set_defaults(func=_cmd_db_copy)

    verify = actions.add_parser(
        "verify",
        help="compare two stores table by table (row counts and checksums)",
        description="Compare a store with its copy, e.g. before deleting the old SQLite file.",
    )
    verify.add_argument("--to", required=True, metavar="URL", help="the copy")
    verify.add_argument(
        "--from", dest="source", default=None, metavar="URL", help="the original (default: the configured store)"
    )
    verify.add_argument("--config", default="config.toml", help=config_help)
    verify.add_argument("--batch-size", type=_at_least_one, default=1000, metavar="N", help=batch_help)
    verify.set_defaults(func=_cmd_db_verify)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vareon`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VareonError as exc:
        print(f"vareon: error: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        leaves = group.subgroup(lambda e: isinstance(e, VareonError))
        if leaves is None:
            raise
        for leaf in _leaves(leaves):
            print(f"vareon: error: {leaf}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
