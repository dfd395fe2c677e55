"""`python -m liandong`: the same command line as `liandong`."""

from liandong.cli import app

app()
