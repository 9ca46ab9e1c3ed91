"""The one exception type a user sees: the CLI prints it as a single line and exits non-zero."""


class WtoursError(Exception):
    """An error caused by input the user can fix (a bad manifest, a broken video, a missing file)."""
