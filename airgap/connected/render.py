"""Render a set of files into a folder (``--output-dir`` of ``bundle import`` and ``mesh install``).

Trust: the bytes are the caller's (already checked); what is on disk at ``out_dir`` is not. Every
file is written completely under a temporary name first; ``before_publish`` runs then, and only if
it returns are the files published. A missing folder is built beside its final name and renamed
into place; in an existing folder an existing name (a planted link included) is never replaced
(exit 4) and a failure leaves none of this call's files behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from airgap.core.atomic import fsync_dir, publish, staged_dir, sweep_stale_temps, temp_name, write_new
from airgap.errors import InvalidInput, WouldOverwrite


def render_files(
    out_dir: Path,
    files: Mapping[str, bytes],
    *,
    modes: Mapping[str, int] | None = None,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
    before_publish: Callable[[], None] | None = None,
) -> list[Path]:
    """Write ``files`` (name → bytes) into ``out_dir``, created when missing; the paths written.

    ``modes`` gives a file its own mode (else ``file_mode``); ``dir_mode`` is a new folder's.
    """
    out_dir = Path(out_dir)
    mode_of = dict(modes or {})
    if not out_dir.exists() and not out_dir.is_symlink():
        with staged_dir(out_dir, mode=dir_mode) as tmp:
            for name, data in files.items():
                write_new(tmp / name, data, mode=mode_of.get(name, file_mode))
            if before_publish is not None:
                before_publish()
        return [out_dir / n for n in files]
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise InvalidInput(f"{out_dir}: exists and is not a folder")
    for name in files:
        if (out_dir / name).exists() or (out_dir / name).is_symlink():
            raise WouldOverwrite(f"{out_dir / name}: already exists; refusing to overwrite")
    return _publish_into(out_dir, files, mode_of, file_mode, before_publish)


def _publish_into(
    out_dir: Path,
    files: Mapping[str, bytes],
    mode_of: Mapping[str, int],
    file_mode: int,
    before_publish: Callable[[], None] | None,
) -> list[Path]:
    """Into an existing folder: stage every file beside, then publish each (never over a name)."""
    sweep_stale_temps(out_dir)
    stage = temp_name(out_dir / "render")
    try:
        stage.mkdir(mode=0o700)
    except OSError as exc:
        raise InvalidInput(f"{out_dir}: folder is not writable: {exc.strerror}") from exc
    written: list[Path] = []
    try:
        for name, data in files.items():
            write_new(stage / name, data, mode=mode_of.get(name, file_mode))
        if before_publish is not None:
            before_publish()
        for name in files:
            publish(stage / name, out_dir / name, replace=False)
            written.append(out_dir / name)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    fsync_dir(out_dir)
    return written


__all__ = ["render_files"]
