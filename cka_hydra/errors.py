"""The exception types the CLI reports as one line: bad input, and output it cannot write."""


class InputError(Exception):
    """Bad input the user can fix: the message names the file or setting and what was expected.

    The CLI prints it as one line, without a traceback.
    """


class CannotWrite(InputError):
    """A file that could not be written: disk full, read-only, no permission. Reported like bad input."""


class FilterError(InputError):
    """A city filter that cannot be parsed, or names a field no city has: a setting, not a file."""
