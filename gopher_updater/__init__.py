"""gopher-updater: promote a Cosmos node image when the chain halts for its upgrade."""

__version__ = "0.1.0"
