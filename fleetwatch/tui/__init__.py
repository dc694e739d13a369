"""fleetwatch.tui."""
