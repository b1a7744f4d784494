"""User-facing errors: the CLI and the node print these as one line, never as a traceback."""
import importlib


class RbaError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""


def require(module: str, extra: str):
    """``import_module(module)``, or one line naming the pip extra that installs it (a robot
    install has the inference dependencies only: setup.py ``[eval]``, ``[train]``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RbaError(f"{module.split('.')[0]} is not installed ({exc}); it comes with "
                       f"pip install 'rba_ros[{extra}]'") from None
