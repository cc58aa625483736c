"""The wrapcli application: assembles the subcommands, nothing else. Heavy imports
(torch, transformers) happen inside command bodies so ``--help`` is instant."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from wrapcli import __version__
from wrapcli.commands import ablate as ablate_cmd
from wrapcli.commands import compare as compare_cmd
from wrapcli.commands import compile as compile_cmd
from wrapcli.commands import eval as eval_cmd
from wrapcli.commands import export as export_cmd
from wrapcli.commands import facts as facts_cmd
from wrapcli.commands import finetune as finetune_cmd
from wrapcli.commands import probe as probe_cmd
from wrapcli.commands import prune as prune_cmd
from wrapcli.commands import quantize as quantize_cmd
from wrapcli.commands import revive as revive_cmd
from wrapcli.commands import train as train_cmd
from wrapcli.core.errors import UsageError

app = typer.Typer(
    name="wrapcli",
    help=(
        "Is a capability removed by fine-tuning really gone, or only wrapped? "
        "Each subcommand reads .safetensors checkpoints and writes a checkpoint or a JSON report.\n\n"
        "Example: wrapcli train --task count --prior a=0.9,b=0.1 -o pt.safetensors && "
        "wrapcli eval pt.safetensors --task count:a --task count:b"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"wrapcli {__version__}")
        raise typer.Exit()


def check_environment(threads: int | None) -> None:
    """The settings wrapcli reads from the environment (and ``--threads``, which overrides
    one of them), checked before any work: each bad value is a usage error naming it."""
    import os

    from wrapcli.core.runtime import check_threads, threads_setting

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch and not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r}: expected whole seconds since 1970-01-01 UTC "
                         "(the reproducible-builds convention), e.g. $(date +%s)")
    if threads is not None:
        check_threads(threads)
    else:
        threads_setting()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    allow_nonfinite: bool = typer.Option(
        False, "--allow-nonfinite", help="Load checkpoints with NaN or Inf weights (to study broken models); refused otherwise."
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="Pin torch's intra-op threads (default: $WRAPCLI_THREADS, else torch's); the same count gives the same bits.",
    ),
) -> None:
    import os

    from wrapcli.core.distributed import PARALLEL_COMMANDS, world

    # read by checkpoint.load in this process and in any it starts
    if allow_nonfinite:
        os.environ["WRAPCLI_ALLOW_NONFINITE"] = "1"
    else:
        os.environ.pop("WRAPCLI_ALLOW_NONFINITE", None)
    # wrapcli reads local files only: nothing may wait on a network (a hub name given as a
    # model is refused as a missing path), here and in any process it starts
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        check_environment(threads)
    except UsageError as e:
        print(f"wrapcli: error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    if threads is not None:  # read by runtime.pin_threads, here and in any process it starts
        os.environ["WRAPCLI_THREADS"] = str(threads)

    if world().size > 1 and ctx.invoked_subcommand not in PARALLEL_COMMANDS:
        print(
            f"wrapcli: error: {ctx.invoked_subcommand} does not run data-parallel; "
            f"under torchrun use {' or '.join(PARALLEL_COMMANDS)}",
            file=sys.stderr,
        )
        raise typer.Exit(1)


# Each command's help ends with its module's EXAMPLE (the epilog); its SUMMARY is its line
# in wrapcli --help. The order is the order of wrapcli --help.
COMMANDS = ((train_cmd, "train", "train"), (finetune_cmd, "finetune", "finetune"), (revive_cmd, "revive", "revive"),
            (prune_cmd, "prune", "prune"), (probe_cmd, "probe", "probe"), (compare_cmd, "compare", "compare"),
            (eval_cmd, "eval", "eval_"), (export_cmd, "export", "export"), (compile_cmd, "compile", "compile_"),
            (facts_cmd, "facts", "facts"), (quantize_cmd, "quantize", "quantize"), (ablate_cmd, "ablate", "ablate"))
for module, name, function in COMMANDS:
    app.command(name, epilog=module.EXAMPLE, short_help=module.SUMMARY)(getattr(module, function))


# No option of wrapcli means anything past these: a count, size or seed beyond 2^31 - 1 is a
# typo or an attack, and would overflow a C integer (torch's seed, numpy's sizes) far from
# the flag that caused it; a non-finite float passes typer's range checks (nan compares false).
INT_LIMIT = 2**31 - 1


def _bounded(command):
    """``command`` (typer's click command tree) with every integer option value capped at
    ``INT_LIMIT`` in absolute value, every float option value required finite and every
    text value non-empty (an empty one would read as "not given"): usage errors naming the
    option, exit 2, before any work."""
    import math

    def bad(v) -> str | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int) and abs(v) > INT_LIMIT:
            return f"{v} is beyond {INT_LIMIT:,}, the largest value wrapcli takes"
        if isinstance(v, float) and not math.isfinite(v):
            return f"{v} is not a finite number"
        if isinstance(v, str) and not v.strip():
            return "is empty (an empty value would read as not given)"
        return None

    def guarded(param):
        process = param.process_value

        def process_value(ctx, value):
            v = process(ctx, value)
            for item in v if isinstance(v, (list, tuple)) else [v]:
                why = bad(item)
                if why:
                    raise typer.BadParameter(why, ctx=ctx, param=param)
            return v

        return process_value

    for sub in [command, *getattr(command, "commands", {}).values()]:  # wrapcli's own options and each command's
        for param in sub.params:
            param.process_value = guarded(param)
    return command


# One name per concept: (command, old flag) -> the flag's name now. The old spelling still
# works for one release, with a one-line note on stderr (docs/cli.md lists the renames).
RENAMED = {
    ("eval", "--n"): "--eval-size",  # examples per evaluation, as train, finetune, prune and revive say
    ("probe", "--n"): "--eval-size",
    ("compare", "--n"): "--eval-size",
    ("revive", "--margin"): "--relearn-margin",  # compare's name for the same margin
    ("train", "--k"): "--occurrence",  # --k is prune's list of K
}


def renamed(argv: list[str]) -> list[str]:
    """``argv`` with each old option name of ``RENAMED`` replaced by its new one (a note on
    stderr for each)."""
    commands = {c.name for c in app.registered_commands}
    out, command = [], None
    for arg in argv:
        if command is None and arg in commands:
            command = arg
        flag, eq, value = arg.partition("=")
        new = RENAMED.get((command, flag)) if arg.startswith("--") else None
        if new:
            print(f"wrapcli: note: {command} {flag} is now {new}; the old name works until the next release",
                  file=sys.stderr)
            arg = new + eq + value
        out.append(arg)
    return out


def _conventional(command):
    """``command``'s help as a terminal user expects it: flags without a type (typer
    shows ``<bool>``) and arguments as ``CKPT`` in the usage line."""
    subs = list(getattr(command, "commands", {}).values())
    for sub in [command, *subs]:
        for param in sub.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
            elif param.param_type_name == "argument":  # typer writes {ckpt}
                usage = param.name.upper() + ("..." if param.nargs != 1 else "")
                param._usage_display_name = lambda usage=usage: usage
        sub.get_help_option = _untyped(sub.get_help_option)
    return command


def _untyped(get_help_option):
    """click makes the --help option when asked: it is a flag too."""
    def made(ctx):
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return made


def command_tree():
    """The app as click runs it and users see it: bounded values, conventional help."""
    return _conventional(_bounded(typer.main.get_command(app)))


def entry(argv: list[str] | None = None) -> int:
    """Run wrapcli on ``argv`` (default: the command line) and return its exit code.
    typer's own usage errors (a bad option value, a missing argument, an unknown flag)
    become one line on stderr and exit 2, like wrapcli's own."""
    import signal

    from typer.exceptions import TyperException

    received = []

    def interrupt(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporaries are removed
        import os
        import threading

        received.append(signum)

        # An exception raised while a destructor runs is swallowed by Python; should that
        # happen, end the process anyway after a grace period (the next run removes any
        # temporary left behind).
        def end():
            print("wrapcli: terminated", file=sys.stderr, flush=True)
            os._exit(128 + signum)

        if len(received) == 1:
            timer = threading.Timer(10.0, end)
            timer.daemon = True  # a normal exit does not wait for it
            timer.start()
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        code = command_tree().main(args=renamed(args), prog_name="wrapcli", standalone_mode=False)
    except typer.Abort:  # click's Ctrl-C outside a command
        code = 128 + signal.SIGINT
    except TyperException as e:  # typer's vendored click: UsageError and its kin
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # the help text, on stderr
            return 2
        ctx = getattr(e, "ctx", None)
        code = getattr(e, "exit_code", 1)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None and code == 2 else ""
        message = " ".join(e.format_message().replace("Value error, ", "").split())
        print(f"wrapcli: error: {message}{where}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if received or code == 128 + signal.SIGINT:  # typer turns KeyboardInterrupt into Exit(130)
        print(f"wrapcli: {'terminated' if received else 'interrupted'}", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    return code if isinstance(code, int) else 0


def run() -> None:
    """The ``wrapcli`` console script."""
    sys.exit(entry())
