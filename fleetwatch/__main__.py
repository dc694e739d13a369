"""Run fleetwatch as a module: python -m fleetwatch."""

import sys

from fleetwatch.cli import main

sys.exit(main())
