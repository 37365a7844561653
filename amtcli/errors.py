"""Error types. Every error a user can cause derives from :class:`AmtError`.

The CLI catches :class:`AmtError` and prints its message as one line; anything
else is a bug and is allowed to surface as a traceback.
"""


class AmtError(Exception):
    """Root of all amtcli errors; the message is shown to the user as one line."""


class AudioError(AmtError):
    """Audio could not be read, decoded or is not valid (missing, corrupt, NaN...)."""


class LabelError(AmtError):
    """A reference/label file is malformed; the message names the file and line."""


class ModelError(AmtError):
    """A model could not be found, downloaded, verified or loaded."""


class ConfigError(AmtError):
    """Invalid options, recipe or command-line combination."""


class OutputError(AmtError):
    """An output could not be written (exists without --overwrite, unwritable...)."""


class DataError(AmtError):
    """A dataset folder or synthesis source is unusable."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process gets SIGTERM, so that it unwinds as
    Ctrl-C does: finished outputs stay, partial ones are removed (exit code 143)."""
