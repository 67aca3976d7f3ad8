"""The one lifecycle of every act on a PKI folder: lock → recovery → log check → change → record.

Every act (``ca init``, ``ca issue``, ``ca revoke``, ``ca crl``, ``ca rotate``, ``ca rotate-root``,
``bundle create``, and any act added later) is written as::

    with pki_act(pki, "revoke", officer) as act:     # 1-4 below, or refused before any change
        ...read, check, sign...                      # 5. the change
        act.record("revoke", params)                 # 6. one signed log entry per change

1. **Lock**: an exclusive ``flock`` on ``PKI/.lock`` (:func:`airgap.core.locking.exclusive_lock`);
   a second act says ``waiting for another act on PKI (lock: PKI/.lock)`` on stderr and waits.
2. **Log check, first part**: a removed log or head refuses every act (exit 1); a folder that
   keeps a log refuses an act without the officer's log key (exit 4) or with another key (exit 4);
   a log whose entries do not verify refuses every act (exit 1) until ``audit verify`` passes.
3. **Recovery** (:func:`airgap.offline.recovery.recover`): whatever a killed act left is finished
   or undone, and each recovery is itself recorded as a ``recover`` entry before anything else.
4. **Log check, second part**: every certificate on disk must have its entry (an unrecorded CA,
   e.g. from a crash of an older airgap, refuses every act: exit 1).
5. The change, by the act's own code.
6. ``act.record(...)`` (or ``act.record_all([...])``, one write of the log for a batch): nothing
   when the folder keeps no log and no officer was given.

Recovery runs after the chain check (2) and before the files check (4) so that recovering can be
recorded in a log that is known good, and what it publishes is checked like everything else.

A refused or failed ``ca init`` (``create=True``) removes the folder and ``.lock`` it created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from airgap.core.atomic import ensure_dir
from airgap.core.keys import spki_sha256
from airgap.core.locking import Notify, exclusive_lock, stderr_note
from airgap.core.names import CLUSTER_NAME_RE
from airgap.errors import Refused
from airgap.offline import ceremony
from airgap.offline.ceremony import Entry, Officer, Prepared
from airgap.offline.inventory import Inventory, read_inventory, where_seen, write_inventory
from airgap.offline.layout import PkiLayout
from airgap.offline.recovery import Recovered, recover, settle_journal


@dataclass
class Act:
    """An act in progress, holding the lock. Record each change with :meth:`record`."""

    layout: PkiLayout
    name: str
    officer: Officer | None
    prepared: Prepared | None
    recovered: list[Recovered] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.layout.path

    @property
    def logged(self) -> bool:
        """True when this act is recorded (the folder keeps a log, or the officer starts one)."""
        return self.officer is not None

    def record(self, act: str, params: Mapping[str, Any], *, at: Any = None) -> Entry | None:
        """Append one signed entry (None when nothing is logged)."""
        if self.officer is None:
            return None
        entry = ceremony.record(self.path, act, params, self.officer, at=at, prepared=self.prepared)
        self.entries.append(entry)
        return entry

    def record_all(self, acts: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Entry]:
        """Append one signed entry per (act, params) in one write of the log ([] when nothing is logged)."""
        if self.officer is None or not acts:
            return []
        written = ceremony.record_all(self.path, acts, self.officer, prepared=self.prepared)
        self.entries.extend(written[len(written) - len(acts) :])  # without a log-start it began with
        return written

    def head(self) -> str | None:
        """The log's head hash now (None: no log)."""
        return ceremony.head_hash(self.path)

    @contextlib.contextmanager
    def settle_on_error(self) -> Iterator[None]:
        """Around the steps after the act's journal was written: on a handled error (a full disk, a
        refused write) the unpublished part is finished or undone at once and recorded
        (:func:`airgap.offline.recovery.settle_journal`), so nothing stays recorded that is not on
        disk; then the error goes on. A kill is left to the next act's recovery."""
        try:
            yield
        except Exception:
            with contextlib.suppress(Exception):  # the original error is the one to report
                self.recovered += settle_journal(self.layout, lambda r: self.record("recover", r.params))
            raise

    def inventory(self) -> Inventory:
        """The inventory; one written before ``key_ids`` existed gets them from the disk (migration)."""
        inv = read_inventory(self.layout.inventory)
        if inv.key_ids is None:
            inv.key_ids = disk_key_ids(self.layout, inv)
        return inv

    def write_inventory(self, inv: Inventory) -> None:
        write_inventory(self.layout.inventory, inv)


def _where(cert: x509.Certificate, what: str) -> tuple[str, str]:
    return spki_sha256(cert.public_key()), where_seen(cert, what)  # type: ignore[arg-type]


def disk_key_ids(layout: PkiLayout, inv: Inventory) -> dict[str, str]:
    """Key id → where, for every CA certificate in the folder and its archive, and every key the
    inventory records as held elsewhere: how an inventory without ``key_ids`` is migrated."""
    seen: list[tuple[str, str]] = []
    if layout.root_cert.is_file():
        seen.append(_where(layout.load_root_cert(), "the root ("))
    nxt = layout.load_next_root_cert()
    if nxt is not None:
        seen.append(_where(nxt, "the next root ("))
    for name in layout.clusters():
        seen.append(_where(layout.load_cluster_cert(name), f"cluster {name} (intermediate"))
    seen += [_where(c, "an archived root (") for c in layout.archived_roots()]
    archive = layout.archive_dir
    for folder in sorted(p.name for p in archive.iterdir()) if archive.is_dir() else []:
        if folder != "root" and CLUSTER_NAME_RE.fullmatch(folder):
            seen += [_where(c, f"cluster {folder} (archived intermediate") for c in layout.archived_certs(folder)]
    seen += [(r.key_id, f"cluster {r.cluster} (intermediate serial {r.serial})") for r in inv.intermediates if r.key_id]
    out: dict[str, str] = {}
    for key_id, where in seen:
        out.setdefault(key_id, where)
    return out


@contextlib.contextmanager
def pki_act(
    pki: Path | PkiLayout,
    name: str,
    officer: Officer | None,
    *,
    create: bool = False,
    notify: Notify | None = stderr_note,
    refused_officer: str | None = None,
) -> Iterator[Act]:
    """Run one act on the PKI folder (see the module docstring for the steps).

    ``create``: the folder may be made (``ca init``); otherwise a missing folder is refused with
    the ``ca init`` hint before anything is created. ``refused_officer`` replaces the message of a
    refusal for a wrong or missing log key (``bundle create`` explains its default).
    """
    layout = pki if isinstance(pki, PkiLayout) else PkiLayout(Path(pki))
    made_dir = False
    if not layout.path.is_dir():
        if not create:
            layout.load_root_cert()  # Refused: "no root here; run 'airgap ca init --dir ...' first"
        ensure_dir(layout.path, mode=0o700)
        made_dir = True
    elif not create and not any(
        p.exists() for p in (layout.root_cert, layout.inventory, layout.log, layout.next_root_dir)
    ):
        layout.load_root_cert()  # a folder that holds no PKI gets no .lock either
    made_lock = not layout.lock.exists()
    ok = False
    try:
        with exclusive_lock(
            layout.lock,
            holder=f"another act on {layout.path}",
            notify=notify,
            unwritable=f"{layout.path}: folder is not writable",
        ):
            act = Act(layout, name, officer, None)
            if ceremony.has_log(layout.path) or ceremony.log_record(layout.path) is not None:
                act.prepared = _prepare(layout, officer, refused_officer)  # 2.
                act.recovered = recover(layout)  # 3.
                for r in act.recovered:
                    act.record("recover", r.params)
                ceremony.check_recorded(layout.path)  # 4.
            else:
                act.recovered = recover(layout)  # 3. (nothing to record it in: no log)
                act.prepared = _prepare(layout, officer, refused_officer)  # 2. genesis lists what is there now
            yield act
            ok = True
    finally:
        if not ok and create:
            _undo_created(layout, made_dir, made_lock)


def _prepare(layout: PkiLayout, officer: Officer | None, refused_officer: str | None) -> Prepared | None:
    try:
        return ceremony.prepare(layout.path, officer)
    except Refused as exc:
        if refused_officer is None:
            raise
        raise Refused(refused_officer) from exc


def _undo_created(layout: PkiLayout, made_dir: bool, made_lock: bool) -> None:
    """After a refused ``ca init``: remove the ``.lock`` and the folder it created, if still empty."""
    if made_lock:
        layout.lock.unlink(missing_ok=True)
    if made_dir:
        with contextlib.suppress(OSError):
            if not any(layout.path.iterdir()):
                layout.path.rmdir()


__all__ = ["Act", "pki_act"]
