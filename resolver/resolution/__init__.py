"""Turning an app id into an address: traffic policies and the resolve algorithm (DESIGN §5)."""
