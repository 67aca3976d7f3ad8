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
    """A signature, hash, chain or bundle did not verify (exit 1)."""

    exit_code = 1


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
