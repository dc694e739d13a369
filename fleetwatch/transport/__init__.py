"""fleetwatch.transport."""
