"""Plain service functions: what the API routes, the CLI and the tests call.

They work on the store (a `Session`, and the vault or settings they need) and return plain models,
with no HTTP or console in sight: the one place each operation is written, whoever triggers it.
"""
