"""Exceptions that carry a one-line, user-facing message.

Every error that a person can cause (a broken image, a wrong folder, a bad option, a missing model)
is raised as a subclass of :class:`BTError`; the command line and the app print ``str(err)`` and
never a traceback.
"""


class BTError(Exception):
    """Base class: ``str(err)`` is a complete one-line message for the user."""


class ImageError(BTError, ValueError):
    """An input file could not be read as an image we can score."""


class DataError(BTError, ValueError):
    """A data folder is missing, empty or not laid out as expected."""


class ModelError(BTError):
    """A model or run is missing, corrupt, or cannot be loaded."""


class ConfigError(BTError, ValueError):
    """An option or parameter is out of range."""
