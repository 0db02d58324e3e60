"""`python -m precog`: the same command as the `precog` script, for environments without its entry point."""

from precog.shell.cli import app

app(prog_name="precog")
