"""The one exception type for bad input."""


class InputError(Exception):
    """Bad input the user can fix: the message names the file or setting and what was expected.

    The CLI prints it as one line, without a traceback.
    """
