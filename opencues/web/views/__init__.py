"""Request handlers, one module per resource; each parses the request, calls the library, renders."""
