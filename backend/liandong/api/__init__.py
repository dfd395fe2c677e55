"""The HTTP and WebSocket API: the FastAPI app (`app.py`), what its routes share (`deps.py`) and
the routes (`routes/`).

Routes stay thin: they check and translate requests and answers, and leave the work to
`liandong.services`, so the CLI and the tests reach the same operations without HTTP.
"""
