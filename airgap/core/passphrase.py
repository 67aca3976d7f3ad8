"""Where passphrases come from: a file, ``AIRGAP_PASSPHRASE``, or a prompt on a TTY.

Never from a command-line value (it would land in shell history and ``ps``). A passphrase file is
read as ``openssl -passin file:F`` reads it: the first line, cut at its newline (a carriage
return before the newline stays, as openssl keeps it).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from airgap.core.limits import MAX_PASSPHRASE_FILE
from airgap.errors import InvalidInput

ENV_VAR = "AIRGAP_PASSPHRASE"


def read_passphrase_file(path: Path, *, what: str = "passphrase file") -> bytes:
    """The first line of ``path`` without its line ending, as openssl's ``file:`` source reads it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PASSPHRASE_FILE)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what}: {exc.strerror}") from exc
    # Exactly openssl's app_get_pass(): cut at the first '\n'. A '\r' before it is kept, as
    # openssl keeps it, so both tools open the same keys from the same file.
    line = data.split(b"\n", 1)[0]
    if not line:
        raise InvalidInput(f"{path}: {what} is empty")
    if line.endswith(b"\r"):
        print(
            f"airgap: warning: {path}: the first line ends with a carriage return (a CRLF file); it is kept as "
            "part of the passphrase, as openssl keeps it; save the file with LF line endings if it is not",
            file=sys.stderr,
        )
    return line


def resolve_passphrase(
    passphrase_file: Path | None,
    *,
    no_passphrase: bool = False,
    confirm: bool = False,
    required: bool = True,
    purpose: str = "PKI passphrase",
    offer_no_passphrase: bool = True,
) -> bytes | None:
    """Return the passphrase to use, or ``None`` when keys are (or will be) unencrypted.

    Order: ``--no-passphrase`` → ``--passphrase-file`` → ``$AIRGAP_PASSPHRASE`` → prompt on a TTY
    (with confirmation when ``confirm``). With no source and ``required``, a clear error (exit 3)
    that suggests ``--no-passphrase`` only when the command has it (``offer_no_passphrase``).
    """
    if no_passphrase:
        if passphrase_file is not None:
            raise InvalidInput("--passphrase-file and --no-passphrase cannot be used together")
        return None
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    env = os.environ.get(ENV_VAR)
    if env:
        return env.encode()
    if sys.stdin.isatty():
        first = getpass.getpass(f"{purpose}: ")
        if confirm:
            second = getpass.getpass(f"{purpose} (again): ")
            if first != second:
                raise InvalidInput("the two passphrases differ")
        if not first:
            raise InvalidInput("empty passphrase")
        return first.encode()
    if required:
        also = ", or use --no-passphrase" if offer_no_passphrase else ""
        raise InvalidInput(f"no passphrase: give --passphrase-file, set {ENV_VAR}, or run on a terminal{also}")
    return None
