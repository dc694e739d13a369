"""Command-line entry point: parses flags, builds the settings, calls one function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fleetwatch import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetwatch",
        description="Terminal monitoring for fleets of self-driving vehicles.",
    )
    parser.add_argument("--version", action="version", version=f"fleetwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("simulate", help="run the fleet simulator as a Kafka producer")
    sub.add_parser("ingest", help="consume Kafka topics into the database (headless)")
    sub.add_parser("report", help="print fleet KPIs and the vehicle table")
    sub.add_parser("db", help="database commands: migrate, status, reset")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print("fleetwatch: the terminal app is not implemented yet", file=sys.stderr)
        return 2
    print(f"fleetwatch {args.command}: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
