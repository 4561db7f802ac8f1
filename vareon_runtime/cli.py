"""The ``vareon`` command: run, init, bench (and the subcommands components add)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from . import __version__
from .errors import VareonError

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

    bench = commands.add_parser("bench", help="run a benchmark, print it and write JSON")
    bench.add_argument("name", help="kernel, http, agents, telemetry, scheduler (whichever are installed)")
    bench.add_argument("--output", default="bench-results", help="directory for the JSON result (default: %(default)s)")
    bench.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    bench.set_defaults(func=_cmd_bench)

    for point in sorted(entry_points(group=COMMAND_GROUP), key=lambda p: p.name):
        point.load()(commands)
    return parser


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
