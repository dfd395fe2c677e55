"""Plain service functions: what the API routes, the CLI and the tests call."""
