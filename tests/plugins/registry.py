"""pytest fixtures for the real registry."""
