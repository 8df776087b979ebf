"""Targets: where documents go. `open_target` picks the adapter from the URL scheme."""
