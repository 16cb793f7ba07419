"""Gallery errors: each one names the file, so an operator knows which card or key is at fault.

They all derive from :class:`GalleryError` (an :class:`~edgeface.errors.EdgefaceError`), so the
CLI prints one line and exits with the error's code. The split matters to callers: a daemon
that meets :class:`WrongKeyError` should alert and keep its last good gallery in memory, while
:class:`TamperedError` means the file itself is bad and the backup generation may help.
None of these is ever swallowed into "an empty gallery".
"""

from __future__ import annotations

from edgeface.errors import ConfigError, EdgefaceError


class GalleryError(EdgefaceError):
    """Base class: the gallery could not be read, written or used."""

    exit_code = 7


class GalleryNotFoundError(GalleryError):
    """The gallery file does not exist (run ``edgeface gallery init`` first)."""


class GalleryExistsError(GalleryError):
    """``init`` would overwrite an existing gallery."""


class WrongKeyError(GalleryError):
    """The key or passphrase given is not the one the gallery was encrypted with."""

    exit_code = 8


class TamperedError(GalleryError):
    """The file is not a valid gallery: modified, truncated, corrupt, or not a gallery at all."""

    exit_code = 9


class ModelMismatchError(GalleryError):
    """The gallery's templates were made by a different embedding model than the one in use."""

    exit_code = 10


class KeySourceError(GalleryError, ConfigError):
    """A key file / credential / passphrase is missing, malformed or has unsafe permissions."""

    exit_code = 11


class IdentityNotFoundError(GalleryError):
    """No enrolled identity has the given name or id (or the name is ambiguous)."""


class DuplicateIdentityError(GalleryError):
    """A new person matches someone already enrolled at the verification threshold."""


class LookalikeError(GalleryError):
    """``--strict``: a new person is a look-alike of someone already enrolled."""


class LockTimeoutError(GalleryError):
    """Another process held the gallery's writer lock for too long."""
