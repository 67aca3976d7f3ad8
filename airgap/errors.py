"""The one error hierarchy of airgap.

Every failure a user can cause or meet is an :class:`AirgapError` carrying a one-line,
user-facing message and the contract's exit code. The CLI turns it into that exit code and one
stderr line in exactly one place (``airgap.cli.main``). Messages never contain secrets.
"""

from __future__ import annotations


class AirgapError(Exception):
    """Base of every error airgap reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class VerificationError(AirgapError):
    """A signature, hash, chain or bundle did not verify (exit 1).

    Raised with ``subject`` (the path or URL it is about), the message is ``SUBJECT: REASON`` and
    both parts stay apart in ``subject`` and ``reason``, so a caller that says it about something
    else (the URL a file came from) uses ``reason`` instead of cutting the message. Raised without,
    ``subject`` is None and ``reason`` is the whole message.
    """

    exit_code = 1

    def __init__(self, message: str, *, subject: object = None) -> None:
        self.subject = None if subject is None else str(subject)
        self.reason = message
        super().__init__(message if subject is None else f"{subject}: {message}")


class InvalidInput(AirgapError):
    """Input is unreadable, malformed, unsafe, or the passphrase is wrong (exit 3)."""

    exit_code = 3


class Refused(AirgapError):
    """A precondition is not met: would overwrite, exists, expired, rollback, wrong cluster (exit 4)."""

    exit_code = 4


class ClusterError(AirgapError):
    """The cluster or the network failed after retries (exit 5)."""

    exit_code = 5


class NetworkError(ClusterError):
    """A download failed after retries (exit 5)."""


# -- errors typed by cause (after python-tuf's api/exceptions.py) --------------------------------
# Each is a subclass of the exit-code family above: the CLI still maps the family to the exit code
# in one place; library callers and tests can tell causes apart (``except WouldOverwrite``).
# Raise the most precise one at the raise site; never re-raise to change the family.


class SignatureMismatch(VerificationError):
    """A signature does not verify against the key(s) trusted for it (exit 1)."""

    def __init__(self, message: str, *, subject: object = None, entry: int | None = None) -> None:
        super().__init__(message, subject=subject)
        self.entry = entry  # the ceremony log entry (its line) it concerns, when it is one


class DigestMismatch(VerificationError):
    """Bytes do not match the digest recorded or signed for them (exit 1)."""


class ChainBroken(VerificationError):
    """A certificate chain does not validate (issuer, signature, constraints) (exit 1)."""


class LogTampered(VerificationError):
    """The ceremony log or its signed head was changed, reordered, cut short or is unreadable (exit 1)."""

    def __init__(self, message: str, *, subject: object = None, entry: int | None = None) -> None:
        super().__init__(message, subject=subject)
        self.entry = entry  # the entry (its line) found broken; None: the log or head as a whole


class NotFound(InvalidInput):
    """A file, folder, key, cluster or record the user named does not exist (exit 3)."""


class Malformed(InvalidInput):
    """Input or a state file cannot be parsed, or is nested or shaped beyond what is allowed (exit 3)."""


class TooLarge(InvalidInput):
    """Input is larger than its cap in ``airgap.core.limits`` (exit 3)."""


class UnsafePath(InvalidInput):
    """A name escapes its folder, or is a link, device or other non-regular file where a file is due (exit 3)."""


class WrongPassphrase(InvalidInput):
    """A passphrase, PIN or identity does not decrypt what it should (exit 3)."""


class WouldOverwrite(Refused):
    """The output exists (or is a planted link); airgap never replaces it silently (exit 4)."""


class Rollback(Refused):
    """Older than what was already accepted: a sequence number, a release, a bundle (exit 4)."""


class Expired(Refused):
    """A certificate, bundle or key is past (or before) its validity (exit 4)."""


class WrongCluster(Refused):
    """The target belongs to another cluster or context than the input names (exit 4)."""


class WrongRelease(VerificationError):
    """A release archive is not the one asked for: its root folder names another version, or it has
    none that can be read (exit 1). The signature covers bytes, not the version: a replay shows here."""


class NotServed(NetworkError):
    """A registry answers that it has no such repository or manifest (MANIFEST_UNKNOWN, NAME_UNKNOWN) (exit 5)."""
