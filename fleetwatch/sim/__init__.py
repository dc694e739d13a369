"""fleetwatch.sim."""
