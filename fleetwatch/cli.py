"""Command-line entry point: parses flags, builds the settings, calls one function.

Each subcommand lives in its own module exposing ``configure(parser)`` (adds its
flags) and ``run(args, settings) -> int``. Modules are imported only for the command
that runs, so ``fleetwatch --help`` stays fast and headless commands never load Textual.
Flags whose ``dest`` is a dotted setting name (``kafka.bootstrap``) override the
settings file and environment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol, cast

from fleetwatch import __version__
from fleetwatch.config import ConfigError, Settings, load_settings


class Command(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("fleetwatch.sim.command", "run the fleet simulator as a Kafka producer"),
    "ingest": ("fleetwatch.pipeline.command", "consume the Kafka topics into the database"),
    "report": ("fleetwatch.store.report", "print fleet KPIs and the vehicle table"),
    "db": ("fleetwatch.store.command", "database commands: migrate, status, reset"),
    "config": ("fleetwatch.config_command", "print the effective settings and their sources"),
}
APP_MODULE = "fleetwatch.tui.command"


class CliError(Exception):
    """A usage error reported as one sentence."""


def _load(module: str) -> Command:
    return cast(Command, importlib.import_module(module))


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """--kafka and --db, shared by the app and the headless commands."""
    parser.add_argument(
        "--kafka",
        dest="kafka.bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: in-process transport)",
    )
    parser.add_argument(
        "--db",
        dest="database.dsn",
        metavar="DSN",
        help="PostgreSQL/TimescaleDB connection string (default: embedded PostgreSQL)",
    )


def add_topic_prefix_flag(parser: argparse.ArgumentParser, doing: str) -> None:
    """--topic-prefix, the kafka.topic_prefix setting; ``doing`` says what uses the topics."""
    parser.add_argument(
        "--topic-prefix",
        dest="kafka.topic_prefix",
        metavar="PREFIX",
        help=f"{doing} PREFIX + the usual topic names, to keep a test or staging fleet apart"
        " on a shared broker (default: settings, none)",
    )


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser with the flags of ``command`` (the app's when None)."""
    return _build_parsers(command)[0]


def _build_parsers(command: str | None) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and the parser of ``command`` (the top one for the app)."""
    parser = argparse.ArgumentParser(
        prog="fleetwatch",
        description=(
            "Terminal monitoring for fleets of self-driving vehicles. "
            "Without a command, starts the live terminal app."
        ),
    )
    parser.add_argument("--version", action="version", version=f"fleetwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = parser
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _load(module).configure(sub_parser)
            chosen = sub_parser
    if command is None:
        _load(APP_MODULE).configure(parser)
    return parser, chosen


def _options_taking_values(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of ``parser`` and its subcommands that are followed by a value."""
    takes_value: set[str] = set()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.nargs != 0:
                takes_value.update(action.option_strings)
    return takes_value


def _join_dash_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--window -1h`` as ``--window=-1h``. argparse takes a value that starts with '-'
    and a digit for an option of its own and says only "expected one argument"; joined,
    the value reaches the option's own check, which says what is wrong with it."""
    takes_value = _options_taking_values(parser)
    joined: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            joined.extend(argv[index:])
            break
        following = argv[index + 1] if index + 1 < len(argv) else ""
        if arg in takes_value and following[:1] == "-" and following[1:2].isdigit():
            joined.append(f"{arg}={following}")
            index += 2
            continue
        joined.append(arg)
        index += 1
    return joined


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in vars(args).items() if "." in key}


def _split_command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Find the subcommand and move it to the front, so that flags written before it
    (``fleetwatch --db DSN report``) reach the subcommand instead of starting the app."""
    app_parser = argparse.ArgumentParser(add_help=False)
    _load(APP_MODULE).configure(app_parser)
    takes_value = _options_taking_values(app_parser)
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            break
        if arg in COMMANDS:
            return arg, [arg, *argv[:index], *argv[index + 1 :]]
        if arg in takes_value:
            index += 1
        elif not arg.startswith("-"):
            break
        index += 1
    return None, list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, argv = _split_command(argv)
    parser, chosen = _build_parsers(command)
    args, unknown = parser.parse_known_args(_join_dash_values(parser, argv))
    if unknown:
        chosen.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        settings, _sources = load_settings(_flag_overrides(args))
    except ConfigError as error:
        print(f"fleetwatch: {error}", file=sys.stderr)
        return 2
    module = COMMANDS[command][0] if command else APP_MODULE
    try:
        return _load(module).run(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`fleetwatch report | head`): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except CliError as error:
        print(f"fleetwatch: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
