"""What every command of the CLI shares: options, consoles, errors, logging, number checks.

Command modules import from here and from the public library API only; none imports
another command module, and nothing here knows the commands.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Annotated, Callable, NoReturn, Optional

import typer
from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
"""Results: stdout."""
err = Console(stderr=True, highlight=False, soft_wrap=True)
"""Errors, warnings and progress bars: stderr."""

ArchiveOpt = Annotated[Optional[Path], typer.Option(
    "--archive", "-a", help="Archive directory [default: $VIDSEEK_ARCHIVE or ./vidseek-archive].")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", help="Torch device for the encoder and the grounder [default: cuda if available, else cpu].")]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes, not when it was made: a
    program that runs several commands in one process (tests, notebooks) swaps stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def stderr_handler(fmt: str = "%(levelname)s %(name)s: %(message)s") -> logging.Handler:
    """The root logger's one stderr handler (added on first use), writing ``fmt``."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def setup_logging(verbose: bool) -> None:
    """Warnings (or, verbose, progress details) to stderr; the model libraries kept quiet."""
    stderr_handler()
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)  # per command
    logging.getLogger("vidseek").setLevel(logging.NOTSET)  # a service command may have set it
    logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        pass


def fail(exc: Exception | str) -> typer.Exit:
    """Print ``error: ...`` and return the exit (status 1) to raise: ``raise fail(exc)``."""
    err.print(f"error: {exc}", markup=False)
    return typer.Exit(code=1)


def usage_error(message: str) -> NoReturn:
    """A command line that asks for something impossible (conflicting or missing options):
    ``error: ...`` and exit status 2, before anything is opened."""
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code=2)


# -- numbers ---------------------------------------------------------------------------
# typer checks integer ranges itself (min=/max=, exit 2). Floats go through these callbacks:
# typer's float ranges let nan and inf through, and a bad number should be named clearly
# (``error: --fps must be a positive number``, exit 1) before an archive or a model is opened.

def _option_name(param: typer.CallbackParam) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0] if longs else param.opts[0]


def number_check(test: Callable[[float], bool], what: str) -> Callable:
    """A typer callback rejecting a given value for which ``test`` is false, and nan/inf."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Optional[float]) -> Optional[float]:
        if value is None or ctx.resilient_parsing:
            return value
        if not (math.isfinite(value) and test(value)):
            raise fail(f"{_option_name(param)} must be {what}, not {value:g}")
        return value

    return check


positive = number_check(lambda v: v > 0, "a positive number")
non_negative = number_check(lambda v: v >= 0, "a number >= 0")


def at_least(low: float) -> Callable:
    return number_check(lambda v: v >= low, f"a number >= {low:g}")


# -- output ----------------------------------------------------------------------------
def clock(seconds: float) -> str:
    """``m:ss.ss``, or ``h:mm:ss.ss`` from an hour on."""
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:05.2f}" if hours else f"{minutes}:{sec:05.2f}"
