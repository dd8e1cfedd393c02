"""The HTTP layer: thin handlers over the library modules, routes listed in ``routes.py``."""
