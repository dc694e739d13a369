"""`fleetwatch simulate`."""

from __future__ import annotations

import argparse
import sys

from fleetwatch.config import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, settings: Settings) -> int:
    print("fleetwatch simulate: not implemented yet", file=sys.stderr)
    return 2
