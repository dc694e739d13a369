"""fleetwatch.tui.widgets."""
