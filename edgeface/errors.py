"""Typed exceptions, so that callers can tell a bad photo from a bad model from a bad key.

Every error raised on purpose by edgeface derives from :class:`EdgefaceError`; the CLI turns
these into one-line messages and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class EdgefaceError(Exception):
    """Base class of every error edgeface raises on purpose."""

    #: process exit code the CLI uses for this kind of failure
    exit_code: int = 1


class ImageError(EdgefaceError):
    """An image could not be read or is not usable (missing, corrupt, empty, wrong size)."""

    exit_code = 3


class ModelError(EdgefaceError):
    """A model file is missing, corrupt, has the wrong checksum or the wrong shape."""

    exit_code = 4


class ConfigError(EdgefaceError):
    """A configuration file or option is invalid."""

    exit_code = 2


class NoFaceError(EdgefaceError):
    """An operation needed a face and the image has none usable."""

    exit_code = 5


class StorageError(EdgefaceError):
    """A file could not be written safely (full disk, read-only directory, ...)."""

    exit_code = 6


class SpoofError(EdgefaceError):
    """A face failed the liveness check: a printed photo, a screen or a mask, not a person."""

    exit_code = 18
