"""``python -m vidseek`` runs the command line."""

from .cli import app

app(prog_name="vidseek")
