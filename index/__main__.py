"""``python -m index``: the maintainer CLI."""

from index.cli import app

app(prog_name="python -m index")
