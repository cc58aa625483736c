"""Driving the CLI in-process from tests."""

from typer.testing import CliRunner

from wrapcli.cli import app

runner = CliRunner()


def run(*args, code=0):
    """Invoke ``wrapcli ARGS``; assert the exit code; return the result."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def one_line_error(result, message: str) -> None:
    """Exit 1 with exactly one stderr line, ``wrapcli: error: ...`` containing ``message``."""
    assert result.exit_code == 1, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("wrapcli: error:") and message in lines[0], lines
