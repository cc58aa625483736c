"""Driving the CLI in-process from tests, through the same entry point as the console
script (wrapcli.cli.entry), so typer's usage errors are seen as users see them."""

import sys

from typer.testing import CliRunner, Result

from wrapcli.cli import app, entry


class Runner(CliRunner):
    """typer's runner, but through ``entry`` rather than the bare click command."""

    def invoke(self, cli=app, args=None, input=None, env=None, catch_exceptions=True, **kwargs):
        assert cli is app and not kwargs, kwargs
        exception, exc_info, code = None, None, 0
        with self.isolation(input=input, env=env) as streams:
            try:
                code = entry([str(a) for a in args or ()])
            except SystemExit as e:  # a command's own sys.exit
                code = e.code if isinstance(e.code, int) else 1
            except Exception as e:
                if not catch_exceptions:
                    raise
                exception, exc_info, code = e, sys.exc_info(), 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                out, err, both = (s.getvalue() for s in streams)
        return Result(runner=self, stdout_bytes=out, stderr_bytes=err, output_bytes=both,
                      return_value=None, exit_code=code, exception=exception, exc_info=exc_info)


runner = Runner()


def run(*args, code=0):
    """Invoke ``wrapcli ARGS``; assert the exit code; return the result."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def one_line_error(result, message: str, code: int = 1) -> None:
    """Exit ``code`` with exactly one stderr line, ``wrapcli: error: ...`` containing ``message``."""
    assert result.exit_code == code, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("wrapcli: error:") and message in lines[0], lines
    assert "unexpected failure" not in lines[0], lines
