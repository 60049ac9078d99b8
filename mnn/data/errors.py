"""The errors the data loaders raise: a file or a download that is not what it should be."""

from mnn.errors import MnnError


class DataError(MnnError, ValueError):
    """A data set is missing, truncated or malformed; the message names the file."""


class DownloadError(DataError, OSError):
    """No mirror gave a file with the published checksum (or none could be reached)."""
