"""pytest fixtures for the chain simulator."""
