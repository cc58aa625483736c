"""The exception types the CLI turns into a one-line message: WrapError exits 1 (a runtime
or data error), UsageError exits 2 (the command line itself is wrong)."""


class WrapError(Exception):
    """A user-facing runtime or data error (bad file, bad task, unwritable path)."""


class UsageError(WrapError):
    """A command line that cannot be right whatever the files hold (an output that is also
    an input, an empty file name)."""
