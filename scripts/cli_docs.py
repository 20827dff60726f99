"""Regenerate docs/cli.md from the CLI's own --help output.

    python scripts/cli_docs.py          # rewrite docs/cli.md
    python scripts/cli_docs.py --check  # exit 1 if docs/cli.md is out of date

tests/test_cli.py runs the check, so the docs cannot drift from ``--help``. Commands come
in the order ``vidseek --help`` lists them (the order ``vidseek/cli/__init__.py`` registers
them).
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from vidseek.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

INTRO = """# Command line reference

`vidseek` is a thin layer over the library (`import vidseek`). Every command that works on
an archive takes `--archive DIR` (default: `$VIDSEEK_ARCHIVE`, else `./vidseek-archive`).
Progress bars go to stderr; results to stdout.

Exit status: errors are printed to stderr as `error: ...` with exit status 1 — a failure,
or an option value a command cannot use (`--fps nan`, a malformed `--box`), named before
anything is opened; `ingest` also exits 1 when any file failed, after indexing all the
others. A command line that cannot run as written — an unknown option, a missing
argument, a value outside its choices or an integer out of range, options that exclude
each other — exits 2.

The commands live in `vidseek/cli/`: `index.py` (ingest, info, reindex), `search.py`
(search, object), `doctor.py` (doctor), `training.py` (synth, train-encoder, train, eval),
`service.py` (watch, jobs, serve), sharing `options.py`. This page is generated from `--help` by
`python scripts/cli_docs.py`; a test keeps it in step.
"""

def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="vidseek",
                                env={"TERMINAL_WIDTH": "100", "COLUMNS": "100", "NO_COLOR": "1"})
    if result.exit_code != 0:
        raise RuntimeError(f"vidseek {' '.join(args)} --help failed: {result.output}")
    return result.output.rstrip() + "\n"


def render() -> str:
    parts = [INTRO, "## vidseek\n", "```\n" + help_text() + "```\n"]
    for name in get_command(app).commands:  # in the order of `vidseek --help`
        parts += [f"## vidseek {name}\n", "```\n" + help_text(name) + "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if DOC.read_text() == text else 1)
    DOC.write_text(text)
    print(f"wrote {DOC}")
