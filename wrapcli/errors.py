"""The one exception type the CLI turns into a one-line message and exit code 1."""


class WrapError(Exception):
    """A user-facing runtime or data error (bad file, bad task, unwritable path)."""
