"""fleetwatch.tui.screens."""
