"""Crash recovery for the PKI folder: finish or undo what a killed act left, and say what was done.

Acts that publish in more than one step write a journal first (``PKI/.journal.json``, public
facts only) and remove it when done. :func:`recover` runs under the act lock, before the log
check of the next act, and returns one :class:`Recovered` per thing it finished or undid; the act
mechanism (:mod:`airgap.offline.act`) records each as a ``recover`` entry of the ceremony log.

The steps an act takes, and what recovery does when a crash falls between two of them:

* ``issue`` (``ca issue`` and ``ca sign``, one journal for the whole batch): every certificate is
  signed → journal naming each (cluster, fingerprint) → inventory (all records, one write) → one
  log entry each → each cluster folder built under a temporary name and renamed into place →
  journal removed. A folder not published: its inventory record is dropped (the ``issue`` entry
  stays; the ``recover`` entry, one per cluster, says whether it took effect).
* ``rotate``: the new folder is built as ``.rotate-X`` → journal → inventory → log → ``X`` and
  ``.rotate-X`` are exchanged in one ``renameat2(RENAME_EXCHANGE)`` → the old folder moves to the
  archive → journal removed. Recorded: recovery finishes the swap; not recorded: it removes
  ``.rotate-X``. ``PKI/X`` exists at every moment, so a crash never makes a cluster vanish.
* ``root-begin``: journal → log → ``next-root/`` renamed into place → every ``root-cert.pem``
  rewritten to both roots → journal removed. Recovery rewrites the trust files it did not reach.
* ``root-finish``: the new CRL is signed first and kept in the journal → inventory → log → the
  old root moves to the archive, the next root into place → CRL written → trust rewritten →
  journal removed. Recovery finishes every step (each is idempotent); it never needs a key.

Trust: the journal is a file in the officer's folder like the inventory; recovery only moves and
rewrites files the journal names, and checks certificate fingerprints before it moves anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.core import x509 as cx
from airgap.core.atomic import (  # exchange: re-exported
    ensure_dir,
    exchange,
    fsync_dir,
    move,
    remove_stale_temps,
    write_replace,
)
from airgap.core.canonical import state_json
from airgap.core.crashpoint import crash_point
from airgap.errors import InvalidInput
from airgap.offline.ceremony import read_entries
from airgap.offline.inventory import (
    RootRecord,
    parse_state,
    read_inventory,
    read_revocations,
    write_inventory,
    write_revocations,
)
from airgap.offline.layout import CA_CERT, ROOT_CERT, ROOT_KEY, ROOT_KEY_REF, PkiLayout
from airgap.offline.layout import write_crl_files as write_crl_files  # its home is layout.py

JOURNAL = ".journal.json"
ROOT_FILES = (ROOT_KEY, ROOT_KEY_REF, ROOT_CERT)  # the order they move in; the certificate last


@dataclass(frozen=True)
class Recovered:
    """One thing recovery finished or undid: the log's ``recover`` entry parameters."""

    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        p = self.params
        return f"recovered an interrupted {p.get('interrupted')}: {p.get('outcome')}"


def journal_path(layout: PkiLayout) -> Path:
    return layout.path / JOURNAL


def write_journal(layout: PkiLayout, doc: dict[str, Any]) -> None:
    """Say what this act is about to publish (before the inventory and the log)."""
    write_replace(journal_path(layout), state_json({"format": 1, **doc}))


def clear_journal(layout: PkiLayout) -> None:
    crash_point()
    journal_path(layout).unlink(missing_ok=True)
    fsync_dir(layout.path)


def _fp(path: Path) -> str | None:
    if not path.is_file():
        return None
    return cx.fingerprint(cx.load_cert_pem(path.read_bytes(), source=str(path)))


def rewrite_trust(layout: PkiLayout) -> list[str]:
    """Give every cluster the current trust (:meth:`PkiLayout.trust_pem`) as its ``root-cert.pem``;
    the names whose file changed."""
    pem = layout.trust_pem()
    changed = []
    for name in layout.clusters():
        p = layout.path / name / ROOT_CERT
        if not p.exists() or p.read_bytes() != pem:
            write_replace(p, pem)
            changed.append(name)
    return changed


def _recorded(layout: PkiLayout, fingerprint: str) -> bool:
    """Whether the act that made ``fingerprint`` was recorded: in the log when the folder keeps
    one (the log is the record), else in the inventory."""
    if layout.log.exists():
        return any(e.params.get("fingerprint") == fingerprint for e in read_entries(layout.path))
    return read_inventory(layout.inventory).knows(fingerprint)


def _drop_from_inventory(layout: PkiLayout, *fingerprints: str) -> bool:
    """Remove the intermediates with these fingerprints from the inventory (one write); whether any was there."""
    gone = set(fingerprints)
    inv = read_inventory(layout.inventory)
    kept = [r for r in inv.intermediates if r.fingerprint not in gone]
    if len(kept) == len(inv.intermediates):
        return False
    inv.forget_keys_of([r for r in inv.intermediates if r.fingerprint in gone])
    inv.intermediates = kept
    write_inventory(layout.inventory, inv)
    return True


def issue_journal(items: list[tuple[str, str]]) -> dict[str, Any]:
    """The journal of an ``issue`` or ``sign`` act publishing these (cluster, fingerprint) pairs."""
    return {"kind": "issue", "items": [{"cluster": c, "fingerprint": fp} for c, fp in items]}


def _issue_items(j: dict[str, Any]) -> list[tuple[str, str]]:
    if "items" not in j:  # one cluster, as the first journals of this format wrote it
        return [(str(j["cluster"]), str(j["fingerprint"]))]
    items = j["items"]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput("act journal: 'items' is not a list of clusters; restore the folder from backup")
    return [(str(i["cluster"]), str(i["fingerprint"])) for i in items]


def pending_publication(layout: PkiLayout) -> frozenset[str]:
    """What an interrupted act (a journal left behind) may not have published yet: its clusters, and
    ``"root"`` for a root rotation. Read-only checks (``ca list``, ``audit verify``) leave those to
    the next act's recovery instead of reporting them lost."""
    jp = journal_path(layout)
    if not jp.is_file():
        return frozenset()
    doc = parse_state(jp.read_bytes(), source=str(jp), what="act journal")
    kind = doc.get("kind")
    if kind == "issue":
        return frozenset(c for c, _ in _issue_items(doc))
    if kind == "rotate":
        return frozenset({str(doc.get("cluster"))})
    return frozenset({"root"})


def _recover_issue(layout: PkiLayout, j: dict[str, Any]) -> list[Recovered]:
    """Each cluster of the batch: published (nothing to undo) or not (its record leaves the inventory)."""
    done, unpublished = [], []
    for cluster, fp in _issue_items(j):
        if _fp(layout.path / cluster / CA_CERT) == fp:
            outcome = "the cluster folder was published; nothing to undo"
        else:
            unpublished.append(fp)
            outcome = "the cluster folder was never published; the intermediate was dropped from the inventory"
        done.append(Recovered({"interrupted": "issue", "cluster": cluster, "fingerprint": fp, "outcome": outcome}))
    if unpublished:
        _drop_from_inventory(layout, *unpublished)
    return done


def _recover_rotate(layout: PkiLayout, j: dict[str, Any]) -> list[Recovered]:
    cluster, new_fp, old_fp = str(j["cluster"]), str(j["fingerprint"]), str(j["old_fingerprint"])
    current, staging = layout.path / cluster, layout.rotation_staging(cluster)
    dest = layout.path / str(j["archive"])
    recorded = _recorded(layout, new_fp)
    cur, stg = _fp(current / CA_CERT), _fp(staging / CA_CERT)
    if cur is None and stg == new_fp:  # the two-rename fallback stopped halfway
        if recorded:
            move(staging, current)
            cur, stg = new_fp, None
        else:
            move(dest, current)
            _drop_from_inventory(layout, new_fp)
            cur = old_fp
    if cur == old_fp and stg == new_fp:
        if recorded:
            exchange(current, staging)
            cur, stg = new_fp, old_fp
        else:
            shutil.rmtree(staging)
            _drop_from_inventory(layout, new_fp)
            return [
                Recovered(
                    {
                        "interrupted": "rotate",
                        "cluster": cluster,
                        "fingerprint": new_fp,
                        "outcome": "the new intermediate was never recorded; it was removed and the old one kept",
                    }
                )
            ]
    if cur == new_fp and stg == old_fp:
        ensure_dir(dest.parent, mode=0o700)
        if dest.exists():
            shutil.rmtree(staging)
        else:
            move(staging, dest)
    return [
        Recovered(
            {
                "interrupted": "rotate",
                "cluster": cluster,
                "fingerprint": new_fp,
                "outcome": "the rotation was recorded; it was finished (the old intermediate is archived)",
            }
        )
    ]


def _recover_root_begin(layout: PkiLayout, j: dict[str, Any]) -> list[Recovered]:
    fp = str(j["fingerprint"])
    if _fp(layout.next_root_cert) == fp:
        changed = rewrite_trust(layout)
        outcome = f"the next root was published; trust rewritten for {len(changed)} cluster(s)"
    else:
        outcome = "the next root was never published; no rotation is in progress"
    return [Recovered({"interrupted": "rotate-root", "fingerprint": fp, "outcome": outcome})]


def finish_root_moves(layout: PkiLayout, archive_dir: Path) -> None:
    """Old root out to ``archive_dir``, next root in; each file moves once and never back."""
    ensure_dir(archive_dir, mode=0o700)
    if not (archive_dir / ROOT_CERT).exists():  # the certificate moves last: then the old root is out
        for name in ROOT_FILES:
            if (layout.path / name).exists():
                move(layout.path / name, archive_dir / name)
    for name in ROOT_FILES:
        if (layout.next_root_dir / name).exists():
            move(layout.next_root_dir / name, layout.path / name)
    if layout.next_root_dir.is_dir():
        remove_stale_temps(layout.next_root_dir)
        layout.next_root_dir.rmdir()
        fsync_dir(layout.path)


def _recover_root_finish(layout: PkiLayout, j: dict[str, Any]) -> list[Recovered]:
    fp = str(j["fingerprint"])
    finish_root_moves(layout, layout.path / str(j["archive"]))
    crl = j.get("crl")
    if isinstance(crl, dict):
        write_crl_files(layout, str(crl["pem"]).encode())
        state = read_revocations(layout.revocations)
        if state.crl_number < int(crl["number"]):
            state.crl_number = int(crl["number"])
            write_revocations(layout.revocations, state)
    rewrite_trust(layout)
    inv = read_inventory(layout.inventory)
    root = layout.load_root_cert()
    if inv.root is None or inv.root.fingerprint != fp:
        inv.root = RootRecord.of(root)
        write_inventory(layout.inventory, inv)
    return [
        Recovered(
            {"interrupted": "rotate-root --finish", "fingerprint": fp, "outcome": "the root rotation was finished"}
        )
    ]


_BY_KIND = {
    "issue": _recover_issue,
    "rotate": _recover_rotate,
    "root-begin": _recover_root_begin,
    "root-finish": _recover_root_finish,
}


def settle_journal(layout: PkiLayout, record: Callable[[Recovered], object]) -> list[Recovered]:
    """After a handled error in an act that wrote a journal: finish or undo its unpublished part now
    (as the next act's recovery would), ``record`` each outcome, and only then remove the journal, so
    a failure to record (a full disk) leaves the journal for the next act to settle again."""
    jp = journal_path(layout)
    if not jp.exists():
        return []
    doc = parse_state(jp.read_bytes(), source=str(jp), what="act journal")
    handler = _BY_KIND.get(str(doc.get("kind")))
    if handler is None:
        return []
    done = handler(layout, doc)
    for r in done:
        record(r)
    clear_journal(layout)
    return done


def _legacy_rotations(layout: PkiLayout) -> list[Recovered]:
    """``.rotate-X`` left without a journal (a crash before the journal was written)."""
    out = []
    for d in layout.rotations_under_way():
        cluster = d.name[len(".rotate-") :]
        final = layout.path / cluster
        if final.exists():
            shutil.rmtree(d, ignore_errors=True)
            outcome = "a new intermediate that was never recorded was removed"
        else:
            move(d, final)
            outcome = "the new intermediate was moved into place"
        out.append(Recovered({"interrupted": "rotate", "cluster": cluster, "outcome": outcome}))
    return out


def recover(layout: PkiLayout) -> list[Recovered]:
    """Finish or undo what a crashed act left (call with the act lock held); what was done."""
    if not layout.path.is_dir():
        return []
    remove_stale_temps(layout.path)
    done: list[Recovered] = []
    jp = journal_path(layout)
    if jp.exists():
        doc = parse_state(jp.read_bytes(), source=str(jp), what="act journal")
        handler = _BY_KIND.get(str(doc.get("kind")))
        if handler is None:
            raise InvalidInput(f"{jp}: unknown act journal kind {doc.get('kind')!r}; restore the folder from backup")
        done.extend(handler(layout, doc))
        clear_journal(layout)
    done.extend(_legacy_rotations(layout))
    held = _recover_custody(layout)
    if held is not None:
        done.append(held)
    return done


def _recover_custody(layout: PkiLayout) -> Recovered | None:
    """An interrupted ``ca custody rekey``: finish it (committed) or undo it, and sync the inventory."""
    from airgap.offline import custody

    def recorded(staged: custody.CustodyRecord) -> bool:
        if not layout.log.exists():
            return False  # no log: the rename of the re-encrypted key is the commit point
        want = custody.created_params(staged)
        return any(e.act == "custody-rekey" and e.params.get("new_custody") == want for e in read_entries(layout.path))

    outcome = custody.finish_interrupted(layout.path, recorded)
    if outcome is None:
        return None
    inv = read_inventory(layout.inventory)
    inv.custody = custody.read_record(layout.path)
    write_inventory(layout.inventory, inv)
    return Recovered(
        {
            "interrupted": "custody-rekey",
            "outcome": outcome,
            "custody_set": custody.created_params(inv.custody),
        }
    )


__all__ = [
    "JOURNAL",
    "Recovered",
    "clear_journal",
    "exchange",
    "finish_root_moves",
    "issue_journal",
    "pending_publication",
    "recover",
    "rewrite_trust",
    "settle_journal",
    "write_crl_files",
    "write_journal",
]
