"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """A mistake in what the user asked for: the message names the problem and the fix."""
