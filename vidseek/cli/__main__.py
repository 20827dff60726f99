"""``python -m vidseek.cli`` runs the command line."""

from . import app

app(prog_name="vidseek")
