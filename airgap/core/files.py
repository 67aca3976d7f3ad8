"""Reading small untrusted files (keys, identities, signatures) with a size cap and clear errors."""

from __future__ import annotations

from pathlib import Path

from airgap.errors import InvalidInput


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """The bytes of ``path``, at most ``cap``; missing, a folder, unreadable or larger is exit 3.

    ``what`` names the file in the messages ("private key", "age identity file", ...).
    """
    article = "an" if what[:1].lower() in "aeiou" else "a"
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: {what} not found") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a folder, expected {article} {what}") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if len(data) > cap:
        raise InvalidInput(f"{path}: too large for {article} {what}")
    return data
