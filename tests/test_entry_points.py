"""The ways to start the command line, and the shape of the vidseek.cli package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "vidseek" / "cli"
COMMANDS = ["ingest", "search", "object", "info", "doctor", "reindex", "synth", "train-encoder",
            "train", "calibrate", "eval", "watch", "jobs", "serve"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100", "TERMINAL_WIDTH": "100"}


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)


def console_script() -> str:
    found = shutil.which("vidseek", path=str(Path(sys.executable).parent))
    assert found, f"no vidseek console script next to {sys.executable}: pip install -e ."
    return found


@pytest.mark.parametrize("how", ["python -m vidseek", "python -m vidseek.cli", "console script"])
def test_every_entry_point_prints_the_usage_with_every_command(how):
    cmd = {"python -m vidseek": [sys.executable, "-m", "vidseek"],
           "python -m vidseek.cli": [sys.executable, "-m", "vidseek.cli"],
           "console script": [console_script()]}[how]
    proc = run(*cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: vidseek [OPTIONS] COMMAND [ARGS]..."), proc.stdout
    listed = [line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == COMMANDS


def test_a_bad_number_exits_nonzero_without_a_traceback(tmp_path):
    archive = tmp_path / "archive"
    proc = run(sys.executable, "-m", "vidseek", "ingest", str(tmp_path), "--fps", "nan",
               "--archive", str(archive))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "error: --fps must be a positive number" in proc.stderr
    assert not archive.exists()
    proc = run(console_script(), "object", "--box", "1,2,3,4", "--archive", str(archive))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import in a file; ``from . import x`` gives (1, 'x')."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                found.append((node.level, node.module))
            else:
                found += [(node.level, alias.name) for alias in node.names]
    return found


def test_command_modules_share_only_the_options_and_use_only_the_public_api():
    import vidseek

    command_modules = sorted(p.stem for p in CLI.glob("*.py")
                             if p.stem not in ("__init__", "__main__", "options"))
    assert command_modules == ["doctor", "index", "search", "service", "stream", "training"]
    public = {"vidseek", *(f"vidseek.{name}" for name in (
        "train", "synth", "service", "evaluation", "annotations", "indexer", "models", "errors",
        "exports", "server"))}
    for path in sorted(CLI.glob("*.py")):
        for level, module in _imports(path):
            if level:  # inside the package: commands import the options, nothing else
                allowed = {"options"} if path.stem != "__init__" else {"options", *command_modules}
                if path.stem == "index":  # `vidseek ingest URL`: the live-stream half of ingest
                    allowed.add("stream")
                if path.stem == "__main__":
                    allowed = {"app"}
                assert module in allowed, f"{path.name} imports .{module}"
            elif module == "vidseek" or module.startswith("vidseek."):
                assert module in public, f"{path.name} imports {module}, not the public API"
    for name in ("Archive", "IngestConfig", "SEARCH_MODES", "EXPORT_FORMATS", "ObjectHit"):
        assert name in vidseek.__all__
    for old in ("cli.py", "service_cli.py"):
        assert not (ROOT / "vidseek" / old).exists()

