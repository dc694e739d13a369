"""``fleetwatch`` without a command: the live terminal app (flags here, Textual loaded in run)."""

from __future__ import annotations

import argparse
import sys

from fleetwatch.cli import add_connection_flags
from fleetwatch.config import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument(
        "--vehicles",
        dest="simulator.vehicles",
        type=int,
        metavar="N",
        help="vehicles to simulate (default 25)",
    )
    parser.add_argument("--seed", dest="simulator.seed", type=int, help="simulator seed")
    parser.add_argument(
        "--no-simulator",
        dest="simulator.enabled",
        action="store_const",
        const=False,
        help="do not run the built-in fleet simulator",
    )
    parser.add_argument(
        "--no-ingest",
        dest="ingest.enabled",
        action="store_const",
        const=False,
        help="do not run the built-in ingestor (another `fleetwatch ingest` feeds the database)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    print("fleetwatch: the terminal app is not implemented yet", file=sys.stderr)
    return 2
