"""fleetwatch: terminal monitoring for fleets of self-driving vehicles."""

__version__ = "0.1.0"
