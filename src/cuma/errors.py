"""User-facing errors: what ``cuma`` reports as one ``cuma: error: <message>`` line, without a traceback.

Raise a `CumaError` (or a subclass) for a problem the user can fix from its message: a bad config value,
bad data, an incompatible adapter. The command line (`cuma.cli`) also treats ``ValueError``, ``OSError``
and a few others as user errors; any other exception is a bug and is shown with its traceback.
"""

from __future__ import annotations


class CumaError(Exception):
    """A problem in the user's input or environment; the message says what and where."""


class ConfigError(CumaError, ValueError):
    """A config value that cannot be used, named as ``section.field=value`` with the problem.

    ``source`` is where the value came from (a config file path or "command-line overrides"); it leads
    the message when known, e.g. ``configs/x.yaml: train.lr=-0.001: must be a positive finite number``.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.message = message
        self.source = source

    def at(self, source: str) -> ConfigError:
        """This error naming ``source``, unless it already names one."""
        return self if self.source else ConfigError(self.message, source)
