"""opencues: a self-hostable server implementing the Appcues Public API v2."""

__version__ = "0.1.0"
