"""Which release of each line (``major.minor``) this jump host has accepted: a rollback guard.

Trust: a release's signature covers its bytes, not its version, and an archive's root folder is
checked against the name asked for (:func:`airgap.core.release.check_archive_root`). That still lets
a mirror serve an older, correctly signed and correctly named release when a newer one is wanted.
This file remembers the newest release of each line that ``release fetch`` or ``release extract``
accepted on this host; an older one of the same line is refused (exit 4) unless the operator says
``--allow-downgrade``. The file is the jump host's own state: anyone who can rewrite it can lower
the mark, so keep the state folder the operator's alone (mode 0700).

File: ``STATE/releases.json`` (:func:`airgap.core.history.resolve_state_dir`), written with
:func:`airgap.core.canonical.state_json` through :func:`airgap.core.atomic.write_replace` under
``STATE/.releases.lock``. Versions outside the ASM (``1.8.6-asm.8``) and Istio (``1.20.3``) forms
belong to no line and are neither checked nor recorded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airgap.core.atomic import ensure_dir, write_replace
from airgap.core.canonical import load_json, state_json
from airgap.core.files import read_capped
from airgap.core.history import resolve_state_dir
from airgap.core.locking import exclusive_lock
from airgap.errors import InvalidInput, Rollback, UnsafePath

RELEASES_FILE = "releases.json"
RELEASES_LOCK = ".releases.lock"
RELEASES_CAP = 1024 * 1024
FORMAT = "airgap-releases/1"

_VERSION = re.compile(r"^(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:-asm\.(\d{1,6}))?$")


def release_line(version: str) -> tuple[str, tuple[int, ...]] | None:
    """``("asm-1.8", (1, 8, 6, 8))`` for ``1.8.6-asm.8``, ``("istio-1.20", (1, 20, 3))`` for ``1.20.3``."""
    m = _VERSION.match(version)
    if not m:
        return None
    major, minor, patch, build = m.groups()
    kind = "asm" if build is not None else "istio"
    order = (int(major), int(minor), int(patch)) + ((int(build),) if build is not None else ())
    return f"{kind}-{int(major)}.{int(minor)}", order


def _path(state: Path | None) -> Path:
    return resolve_state_dir(state) / RELEASES_FILE


def _read(path: Path) -> dict[str, str]:
    if not path.exists() and not path.is_symlink():
        return {}
    if path.is_symlink() or not path.is_file():
        raise UnsafePath(f"{path}: accepted releases file is not a regular file (a link?); refusing to read it")
    doc = load_json(read_capped(path, RELEASES_CAP, "accepted releases file"), what=f"{path}: accepted releases file")
    lines = doc.get("lines") if isinstance(doc, dict) and doc.get("format") == FORMAT else None
    if not isinstance(lines, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and release_line(v) is not None for k, v in lines.items()
    ):
        raise InvalidInput(f"{path}: not an airgap accepted-releases file ({FORMAT})")
    return dict(lines)


def check_not_downgrade(version: str, *, allow_downgrade: bool = False, state: Path | None = None) -> None:
    """Refuse (exit 4) ``version`` when this host accepted a newer release of its line."""
    parsed = release_line(version)
    if parsed is None or allow_downgrade:
        return
    line, order = parsed
    path = _path(state)
    newest = _read(path).get(line)
    if newest is None:
        return
    newest_order = release_line(newest)
    if newest_order is not None and newest_order[1] > order:
        raise Rollback(
            f"release {version} is older than {newest}, which this jump host already accepted for line "
            f"{line} ({path}); refusing a downgrade (pass --allow-downgrade if you mean it)"
        )


def record_accepted(version: str, *, state: Path | None = None) -> None:
    """Raise this host's mark for ``version``'s line to ``version`` (never lower it)."""
    parsed = release_line(version)
    if parsed is None:
        return
    line, order = parsed
    folder = ensure_dir(resolve_state_dir(state), 0o700)
    with exclusive_lock(folder / RELEASES_LOCK, holder="another airgap command recording a release"):
        path = folder / RELEASES_FILE
        lines = _read(path)
        known = release_line(lines[line]) if line in lines else None
        if known is not None and known[1] >= order:
            return
        lines[line] = version
        doc: dict[str, Any] = {"format": FORMAT, "lines": dict(sorted(lines.items()))}
        write_replace(path, state_json(doc), mode=0o600)


__all__ = ["RELEASES_FILE", "check_not_downgrade", "record_accepted", "release_line"]
