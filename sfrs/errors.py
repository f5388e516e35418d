"""Errors that reach the user as one clear line (exit code 2), never a traceback."""


class SfrsError(Exception):
    """Base class of every error the command line reports as a single line."""


class DataError(SfrsError):
    """A data set, file or image cannot be used; the message names the file and the problem."""


class ConfigError(SfrsError):
    """A configuration key, value or command-line option is wrong."""


class CheckpointError(SfrsError):
    """A checkpoint cannot be read or does not describe a usable model."""
