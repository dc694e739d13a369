"""fleetwatch.store."""
