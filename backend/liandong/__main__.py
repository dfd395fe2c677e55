"""`python -m liandong`: the same command line as `liandong`.

Only an entry point, so that the shop runs from a checkout or a venv without the console script:
the commands themselves live in `liandong.cli`.
"""

from liandong.cli import app

app()
