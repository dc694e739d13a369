"""fleetwatch.pipeline."""
