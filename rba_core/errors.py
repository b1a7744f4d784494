"""User-facing errors: the CLI and the node print these as one line, never as a traceback."""


class RbaError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""
