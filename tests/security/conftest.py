"""The attacks of issue 12, each a test: the app over real services (tests/api's fixtures: SQLite,
an escrow on a real anvil), real SMTP (aiosmtpd) and a real uvicorn server where the wire matters."""

from __future__ import annotations

from tests.api.conftest import api, api_factory, chain  # noqa: F401  (fixtures shared with tests/api)
