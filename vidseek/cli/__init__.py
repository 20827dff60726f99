"""The ``vidseek`` command line: a thin layer over the public library API.

This module builds the one typer application, :data:`app` (the ``vidseek`` console script,
``python -m vidseek`` and ``python -m vidseek.cli``), and registers every command. The
commands live in one module per group, each importing only :mod:`.options` and the
library's public API:

- :mod:`.index`: ``ingest``, ``info``, ``reindex``
- :mod:`.search`: ``search``, ``object``
- :mod:`.training`: ``synth``, ``train-encoder``, ``train``, ``calibrate``, ``eval``
- :mod:`.service`: ``watch``, ``jobs``, ``serve``
- :mod:`.doctor`: ``doctor``
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import doctor, index, search, service, training
from .options import setup_logging

__all__ = ["app"]

app = typer.Typer(
    help="vidseek: index video archives once, then find when things happen.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def main(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log progress details to stderr.")] = False) -> None:
    setup_logging(verbose)


for _name, _command in (
    ("ingest", index.ingest),
    ("search", search.search),
    ("object", search.object_query),
    ("info", index.info),
    ("doctor", doctor.doctor),
    ("reindex", index.reindex),
    ("synth", training.synth),
    ("train-encoder", training.train_encoder),
    ("train", training.train),
    ("calibrate", training.calibrate),
    ("eval", training.evaluate),
    ("watch", service.watch),
    ("jobs", service.jobs),
    ("serve", service.serve),
):
    app.command(_name)(_command)
del _name, _command
