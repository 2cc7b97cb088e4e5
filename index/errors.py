"""One error hierarchy for the whole project.

Every failure a caller can act on is a ``PolicyQAError``; the service maps each class
to an HTTP status in one place (``service/errors.py``) and the CLI prints the message.
"""

from __future__ import annotations


class PolicyQAError(Exception):
    """Base class: the message is safe to show to the caller."""


class InvalidInputError(PolicyQAError):
    """The request or file is well-formed but its content is not acceptable."""


class NotFoundError(PolicyQAError):
    """A document, chunk or other named thing does not exist."""


class ConflictError(PolicyQAError):
    """The operation clashes with the current state (e.g. a duplicate document id)."""


class PayloadTooLargeError(PolicyQAError):
    """A body, question or upload exceeds its configured limit."""


class UnsupportedMediaError(PolicyQAError):
    """An upload in a format we do not read."""


class UnauthorizedError(PolicyQAError):
    """Missing or wrong credentials."""


class MissingCredentialsError(UnauthorizedError):
    """No credentials, or not in the form asked for (``Authorization: Bearer <key>``)."""


class ForbiddenError(PolicyQAError):
    """Credentials are fine but the action is not allowed (e.g. admin disabled, bad origin)."""


class RateLimitedError(PolicyQAError):
    """Too many requests from one client; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IndexNotReadyError(PolicyQAError):
    """The index is still loading or failed to load."""


class IndexUnavailableError(IndexNotReadyError):
    """The index store (a Milvus server) cannot be reached or did not answer in time; the
    request is refused whole, and the service recovers when the store is back."""


class CorpusError(PolicyQAError):
    """The catalog or a source document cannot be read."""


class IndexIntegrityError(PolicyQAError):
    """Persisted index artefacts are corrupt, incomplete or built for another model/corpus."""


class IndexFormatError(IndexIntegrityError):
    """The index was written in another on-disk format (by an older policy-qa)."""


class IndexWriteError(PolicyQAError):
    """The index, or the corpus with it, could not be written (a full or read-only disk).

    Nothing was switched: the previous version is still current and still served.
    """

    @classmethod
    def from_os_error(cls, error: OSError) -> IndexWriteError:
        return cls(
            f"cannot write the index ({error.strerror or error}); nothing was changed and the "
            "previous index is still current. Free disk space (or fix permissions) and try again."
        )


class ModelError(PolicyQAError):
    """The embedding model cannot be built or loaded."""
