"""The two JSON encodings airgap writes: canonical (hashed and signed) and state files (read by people).

* :func:`canonical_json` is the one byte encoding of a JSON value that is hashed or signed: the
  bundle manifest and every ceremony-log entry and head. Keys sorted, no spaces, ASCII only, and
  no NaN/Infinity (``allow_nan=False``: they are not JSON, and two parsers would disagree on them).
* :func:`state_json` is the encoding of the state files in a PKI folder or a jump host's state
  folder (``inventory.json``, ``revocations.json``, ``state/sequence.json`` ...): indented, keys
  sorted, one trailing newline, also without NaN/Infinity.

And the one way airgap reads JSON: :func:`load_json` refuses input over its size cap and nesting
over its depth cap (scanned in the bytes, strings skipped, before ``json.loads`` could recurse
into a RecursionError), duplicate keys and NaN/Infinity.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from airgap.core.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH
from airgap.errors import AirgapError, Malformed, TooLarge


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


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets inside strings not counted)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for c in brackets:
        depth += 1 if c in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise _Refused("duplicate key")
    return doc


def _no_constant(value: str) -> Any:
    raise _Refused(f"{value} is not JSON")


def load_json(
    data: bytes | str,
    *,
    what: str,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    error: Callable[[str], AirgapError] | None = None,
    invalid: str = "is not valid JSON",
    detail: bool = False,
    **hooks: Any,
) -> Any:
    """Parse JSON that airgap reads (state files, records, log entries, server answers), strictly.

    ``what`` names it in the one-line error (``"PATH: import state"``). Larger than ``max_bytes``
    is :class:`TooLarge`; nested deeper than ``max_depth``, not JSON (``what`` + ``invalid``),
    duplicate keys or NaN/Infinity are :class:`Malformed` -- or all of them ``error`` when given
    (a ceremony log entry is :class:`~airgap.errors.LogTampered`). ``hooks`` go to ``json.loads``;
    ``detail`` adds the parser's reason to the message.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise (error or TooLarge)(f"{what} is too large (over {max_bytes} bytes)")
    if json_depth(raw) > max_depth:
        deep = f"nested too deeply (over {max_depth} levels)"
        raise (error or Malformed)(f"{what} {invalid}: {deep}" if detail else f"{what} is {deep}")
    hooks.setdefault("object_pairs_hook", _no_duplicates)
    hooks.setdefault("parse_constant", _no_constant)
    try:
        return json.loads(raw, **hooks)
    except (ValueError, RecursionError) as exc:
        raise (error or Malformed)(f"{what} {invalid}: {exc}" if detail else f"{what} {invalid}") from exc


__all__ = ["TIME_FORMAT", "canonical_json", "json_depth", "load_json", "parse_utc_text", "state_json", "utc_text"]
