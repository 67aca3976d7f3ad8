"""The two JSON encodings airgap writes: canonical (hashed and signed) and state files (read by people).

* :func:`canonical_json` is the one byte encoding of a JSON value that is hashed or signed: the
  bundle manifest and every ceremony-log entry and head. Keys sorted, no spaces, ASCII only, and
  no NaN/Infinity (``allow_nan=False``: they are not JSON, and two parsers would disagree on them).
* :func:`state_json` is the encoding of the state files in a PKI folder or a jump host's state
  folder (``inventory.json``, ``revocations.json``, ``state/sequence.json`` ...): indented, keys
  sorted, one trailing newline, also without NaN/Infinity.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def canonical_json(doc: Any) -> bytes:
    """The one byte encoding of ``doc`` that is hashed and signed (ValueError on NaN/Infinity)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def state_json(doc: Any) -> bytes:
    """A state file's bytes: indented, keys sorted, a trailing newline (ValueError on NaN/Infinity)."""
    return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_text(t: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC: the one time text manifests, logs and state files hold."""
    return t.astimezone(dt.UTC).strftime(TIME_FORMAT)


def parse_utc_text(value: str) -> dt.datetime:
    """The inverse of :func:`utc_text` (ValueError when ``value`` is not one)."""
    return dt.datetime.strptime(value, TIME_FORMAT).replace(tzinfo=dt.UTC)


__all__ = ["TIME_FORMAT", "canonical_json", "parse_utc_text", "state_json", "utc_text"]
