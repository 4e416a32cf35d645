"""The error raised when a dataset's files are missing."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk and could not be downloaded.

    The message is one line: which dataset, the exact folder where its files are expected, why
    they could not be fetched, and what works offline (``dataset=digits``).
    """
