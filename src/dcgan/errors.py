"""Errors that a user can fix, reported as one line without a traceback."""


class UserError(Exception):
    """A problem with input or configuration: the message names the value and the fix."""


class ConfigError(UserError):
    """An invalid key or value in params.yaml."""


class DataValidationError(UserError):
    """Raw data failed its Great Expectations suite; the message names the report."""


class TransientDownloadError(UserError):
    """A download failed in a way that may pass on a retry: a 5xx response, a time-out, a dropped connection."""
