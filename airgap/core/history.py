"""The jump host's own record of what crossed the gap: every bundle import, release extract and image push.

Trust: the record is written by this host for its auditors; it is not signed. ``airgap audit
report PKI --state DIR`` reads it and matches each event against the root host's signed ceremony
log (a bundle import whose bundle or ceremony head the log does not know is a failure), so the
record can add evidence but a forged line can only make the report fail, never pass.

Files: ``STATE/history.jsonl``, one canonical JSON object a line (``time``, ``kind``, and the
event's fields), appended under ``STATE/.history.lock`` with ``O_APPEND``, mode 0600, never
through a symlink, fsynced before the command reports success. A line cut short by a crash is
skipped by :func:`read_events` and reported to the caller as ``damaged``.

``STATE`` is ``--state`` where a command has it, else ``$AIRGAP_STATE_DIR``, else
``$XDG_STATE_HOME/airgap``, else ``~/.local/state/airgap``: the folder that holds the import
state (``accepted.json``) too.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.core.atomic import ensure_dir, open_for_update
from airgap.core.canonical import canonical_json, load_json, utc_text
from airgap.core.files import read_capped
from airgap.core.locking import exclusive_lock
from airgap.errors import AirgapError

HISTORY_FILE = "history.jsonl"
HISTORY_LOCK = ".history.lock"
HISTORY_CAP = 64 * 1024 * 1024  # a jump host's years of events, far below this

# The kinds of event, as written in ``kind``.
BUNDLE_IMPORT = "bundle-import"
RELEASE_EXTRACT = "release-extract"
IMAGES_PUSH = "images-push"
KINDS = frozenset({BUNDLE_IMPORT, RELEASE_EXTRACT, IMAGES_PUSH})


def resolve_state_dir(override: Path | None = None) -> Path:
    """The jump host's state folder: ``override``, ``$AIRGAP_STATE_DIR``, XDG state, ``~/.local/state``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("AIRGAP_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "airgap"


def record_event(
    kind: str, fields: dict[str, Any], *, state: Path | None = None, now: dt.datetime | None = None
) -> None:
    """Append one event to the jump host's history (fsynced before returning).

    ``fields`` must be JSON (strings, numbers, lists, dicts); ``kind`` one of :data:`KINDS`. Every
    URL in a string loses its user-info (``https://user:pw@host`` is recorded as ``https://host``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown history event kind {kind!r}")
    event = {**_without_userinfo(fields), "kind": kind, "time": utc_text(now or dt.datetime.now(dt.UTC))}
    line = canonical_json(event) + b"\n"
    folder = ensure_dir(resolve_state_dir(state), 0o700)
    with exclusive_lock(folder / HISTORY_LOCK, holder="another airgap command recording history"):
        fd = open_for_update(folder / HISTORY_FILE, mode=0o600, append=True)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _without_userinfo(value: Any) -> Any:
    """``value`` with :func:`airgap.core.display.without_userinfo` applied to every string in it."""
    from airgap.core.display import without_userinfo

    if isinstance(value, str):
        return without_userinfo(value)
    if isinstance(value, dict):
        return {k: _without_userinfo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_userinfo(v) for v in value]
    return value


@dataclass(frozen=True)
class History:
    """The events read back, in the order written; ``damaged`` counts lines that did not parse."""

    events: tuple[dict[str, Any], ...] = ()
    damaged: tuple[int, ...] = field(default=())


def read_events(state: Path | None = None) -> History:
    """Every event of ``STATE/history.jsonl`` (an absent file is an empty history).

    Trust: the file is untrusted input; each line is parsed on its own with the size cap above,
    and a line that is not a JSON object with a known ``kind`` and a ``time`` is listed in
    ``damaged`` (1-based line numbers) rather than trusted or silently dropped.
    """
    path = resolve_state_dir(state) / HISTORY_FILE
    if not path.exists():
        return History()
    data = read_capped(path, HISTORY_CAP, "jump host history", regular=True)
    events: list[dict[str, Any]] = []
    damaged: list[int] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            doc = load_json(raw, what=f"{path}: line {number}")
        except AirgapError:
            damaged.append(number)
            continue
        if not isinstance(doc, dict) or doc.get("kind") not in KINDS or not isinstance(doc.get("time"), str):
            damaged.append(number)
            continue
        events.append(doc)
    return History(tuple(events), tuple(damaged))


__all__ = [
    "BUNDLE_IMPORT",
    "HISTORY_FILE",
    "IMAGES_PUSH",
    "KINDS",
    "RELEASE_EXTRACT",
    "History",
    "read_events",
    "record_event",
    "resolve_state_dir",
]
