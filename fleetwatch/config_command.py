"""``fleetwatch config``: print the effective settings, secrets masked, with their sources."""

from __future__ import annotations

import argparse

from fleetwatch.cli import add_connection_flags
from fleetwatch.config import Settings, config_path, describe, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    flags = {key: value for key, value in vars(args).items() if "." in key}
    _, sources = load_settings(flags)
    print(f"# settings file: {config_path()}")
    rows = describe(settings, sources)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value or '-'}  ({source})")
    return 0
