"""Put a verified bundle's CA material into a cluster as the ``cacerts`` Secret istiod reads.

Trusted: a prepared import (the bundles code has verified the bundle's signature, its cluster
name, its sequence against the local record, and the CA material itself before it hands us one).
Not trusted: the live cluster, which may hold anything, including a newer or a different
``cacerts`` written by someone else, or change it while we work.

The rules (issue 5):

1. ``istio-system`` is created when missing.
2. No ``cacerts`` yet: it is created, with the four keys (never fewer; ``ca-crl.pem`` too if given).
3. A live secret annotated ``airgap.dev/cluster`` for another cluster than the bundle's is refused
   (exit 4), ``rotate`` or not: a CA is never carried from one cluster's bundle into another.
   Whatever else holds, a live secret whose ``airgap.dev/sequence`` annotation is newer than the
   bundle's is a rollback and is refused (exit 4), ``rotate`` or not, same content or not.
4. The same content and the same ``airgap.dev/*`` annotations already there: nothing is written;
   the result says "unchanged".
   The same content (the same CA material) but other ``airgap.dev/*`` annotations (a newer bundle
   carrying the same material): only the annotations are brought to the bundle's, in one update
   conditioned on the ``resourceVersion`` we read; the result says "annotated". So a ``cacerts``
   made by hand with the guide's ``kubectl create secret generic cacerts --from-file ...`` from
   the same four files (the key decrypted, in either PEM encoding) is adopted, its data untouched.
   Different content: refused (exit 4), the live secret untouched, unless ``rotate``.
5. ``rotate``: the live secret is first saved as ``cacerts-backup-<UTC time>`` (a rerun after a
   kill reuses an existing backup of the same content), then ``cacerts`` is replaced in one update
   conditioned on the ``resourceVersion`` we read. If someone else wrote in between (409
   Conflict), our backup is removed and the decision is made again from the new state.
6. The local record of accepted bundles is written only after the cluster is in the new state.
   In a fleet it is written after the first cluster that reaches it (once); a cluster that failed
   can be retried later with the same bundle, because this host accepts an equal sequence with the
   same bundle id again.
7. A dry run reads the cluster (GETs only) and says what the rules above would do; it never
   writes and never records.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airgap.connected.access import Need, Undo, ask_every, require
from airgap.connected.fleet import DEFAULT_PARALLEL, FleetReport, Outcome, run_fleet
from airgap.connected.kube import AlreadyExists, Conflict, Kube, RetryPolicy, connect, policy_from_env
from airgap.core.names import ANNOTATION_PREFIX, CA_KEY, CACERTS_OPTIONAL, CACERTS_REQUIRED, ISTIO_NAMESPACE
from airgap.errors import AirgapError, ClusterError, InvalidInput, Refused, Rollback, WouldOverwrite, WrongCluster

JSON = dict[str, Any]

SECRET_NAME = "cacerts"  # noqa: S105  (a name, not a password)
NAMESPACE = ISTIO_NAMESPACE
REQUIRED_KEYS = CACERTS_REQUIRED
OPTIONAL_KEYS = CACERTS_OPTIONAL
A_BUNDLE = f"{ANNOTATION_PREFIX}bundle-id"
A_SEQUENCE = f"{ANNOTATION_PREFIX}sequence"
A_SIGNER = f"{ANNOTATION_PREFIX}signer"
A_FINGERPRINT = f"{ANNOTATION_PREFIX}ca-fingerprint"
A_CLUSTER = f"{ANNOTATION_PREFIX}cluster"
L_BACKUP_OF = f"{ANNOTATION_PREFIX}backup-of"
A_BACKED_UP_AT = f"{ANNOTATION_PREFIX}backed-up-at"
A_BACKUP_RV = f"{ANNOTATION_PREFIX}backup-of-resource-version"


_RECORD_LOCK = threading.Lock()


class PreparedImportLike(Protocol):
    """What :func:`import_to_cluster` needs from ``airgap.connected.bundle_import.PreparedImport``."""

    def namespace_manifest(self) -> JSON: ...

    def cacerts_secret_manifest(self) -> JSON: ...


@dataclass(frozen=True)
class ImportResult:
    """The cluster's state after an import (or, with ``dry_run``, what an import would do).

    ``outcome`` is one of ``created``, ``unchanged``, ``annotated`` (same CA material, the
    ``airgap.dev/*`` annotations brought to this bundle's), ``rotated`` (the old secret saved as
    ``backup``); in a dry run the same words say what would happen (``rotated``: ``backup`` is an
    existing backup that would be reused, or the name a new one would get).
    """

    context: str
    outcome: str  # "created" | "unchanged" | "annotated" | "rotated"
    namespace_created: bool
    backup: str | None
    sequence: int | None
    fingerprint: str | None
    dry_run: bool = False
    backup_exists: bool = False  # dry run + rotated: ``backup`` already holds the live content

    def describe(self) -> str:
        """One human line: ``context C: cacerts rotated (backup NAME)``, ``... would create cacerts``..."""
        if self.dry_run:
            return self._describe_plan()
        seq = "unknown" if self.sequence is None else str(self.sequence)
        text = {
            "created": "cacerts created",
            "unchanged": "cacerts unchanged (same content and annotations; nothing written)",
            "annotated": f"cacerts annotated (same CA material; airgap.dev annotations updated to sequence {seq})",
            "rotated": f"cacerts rotated (backup {self.backup})",
        }.get(self.outcome, f"cacerts {self.outcome}")
        parts = [f"context {self.context}: {text}"]
        if self.namespace_created:
            parts.append(f"namespace {NAMESPACE} created")
        return "; ".join(parts)

    def _describe_plan(self) -> str:
        seq = "unknown" if self.sequence is None else str(self.sequence)
        if self.backup_exists:
            backup = f"reusing the existing backup {self.backup}"
        else:
            backup = f"saving the live secret as a new backup {self.backup}"
        text = {
            "created": "would create cacerts",
            "unchanged": "cacerts unchanged (same content and annotations; nothing would be written)",
            "annotated": f"would update the cacerts annotations to sequence {seq} (same CA material)",
            "rotated": f"would rotate cacerts ({backup})",
        }.get(self.outcome, f"would {self.outcome} cacerts")
        parts = [f"context {self.context}: {text}"]
        if self.namespace_created:
            parts.append(f"would create namespace {NAMESPACE}")
        return "; ".join(parts)

    @property
    def result_word(self) -> str:
        """The fleet table's RESULT column: the outcome, or ``would-<verb>`` in a dry run."""
        if not self.dry_run or self.outcome == "unchanged":
            return self.outcome
        return {"created": "would-create", "annotated": "would-annotate", "rotated": "would-rotate"}[self.outcome]

    @property
    def detail(self) -> str:
        """The fleet table's DETAIL column."""
        parts = []
        if self.backup:
            parts.append(f"backup {self.backup}" + (" (exists)" if self.dry_run and self.backup_exists else ""))
        if self.outcome == "annotated":
            parts.append(f"sequence {self.sequence}")
        if self.namespace_created:
            parts.append(f"namespace {NAMESPACE} {'would be ' if self.dry_run else ''}created")
        return "; ".join(parts)

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "outcome": self.outcome,
            "dry_run": self.dry_run,
            "namespace_created": self.namespace_created,
            "backup": self.backup,
            "sequence": self.sequence,
            "ca_fingerprint": self.fingerprint,
        }


class RecordFailed(AirgapError):
    """The cluster holds the bundle, but this host's record of accepted bundles could not be written."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _decoded(data: Any) -> dict[str, bytes] | None:
    if not isinstance(data, dict):
        return None
    out: dict[str, bytes] = {}
    for k, v in data.items():
        try:
            out[str(k)] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            return None
    return out


def _check_desired(secret: JSON) -> None:
    data = secret.get("data") or {}
    missing = [k for k in REQUIRED_KEYS if not data.get(k)]
    if missing:
        raise InvalidInput(f"cacerts manifest lacks {', '.join(missing)}; refusing to write fewer than the four keys")
    extra = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if extra:
        raise InvalidInput(f"cacerts manifest has unexpected keys: {', '.join(extra)}")
    meta = secret.get("metadata") or {}
    if meta.get("name") != SECRET_NAME or meta.get("namespace", NAMESPACE) != NAMESPACE:
        raise InvalidInput(f"cacerts manifest must be Secret {NAMESPACE}/{SECRET_NAME}")


def _sequence(secret: JSON | None) -> int | None:
    value = ((secret or {}).get("metadata", {}).get("annotations") or {}).get(A_SEQUENCE)
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _annotation(secret: JSON | None, key: str) -> str | None:
    value = ((secret or {}).get("metadata", {}).get("annotations") or {}).get(key)
    return None if value is None else str(value)


def _live_fingerprint(live: JSON) -> str:
    """The live CA's fingerprint: airgap's annotation, else (a cacerts made by hand) the SHA-256 of
    its ``ca-cert.pem`` read from the Secret, else ``unknown``."""
    from airgap.connected.kube import secret_value
    from airgap.core import x509 as cx
    from airgap.core.names import CA_CERT

    noted = _annotation(live, A_FINGERPRINT)
    if noted:
        return noted
    pem = secret_value(live.get("data"), CA_CERT)
    try:
        return cx.fingerprint(cx.load_cert_pem(pem, source="live cacerts")) if pem else "unknown"
    except AirgapError:
        return "unknown"


def same_content(live: JSON, desired: JSON) -> bool:
    """True when the live secret holds exactly the desired keys with the same CA material: the same
    bytes, or (a ``cacerts`` made by hand with kubectl from the same four files) the same
    certificates and the same private key in another PEM encoding (traditional or PKCS#8)."""
    a, b = _decoded(live.get("data") or {}), _decoded(desired.get("data") or {})
    if a is None or b is None or set(a) != set(b):
        return False
    if a == b:
        return True
    others = [k for k in a if k != CA_KEY]
    return all(a[k] == b[k] for k in others) and _same_private_key(a.get(CA_KEY), b.get(CA_KEY))


def _same_private_key(pem_a: bytes | None, pem_b: bytes | None) -> bool:
    """The same unencrypted private key, whatever its PEM encoding (an encrypted or unreadable one: False)."""
    if not pem_a or not pem_b or len(pem_a) > 64 * 1024:
        return False
    from cryptography.hazmat.primitives import serialization

    def canonical(pem: bytes) -> bytes | None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            return None
        return key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca, cb = canonical(pem_a), canonical(pem_b)
    return ca is not None and ca == cb


def _backup_name(at: dt.datetime) -> str:
    return f"{SECRET_NAME}-backup-{at.astimezone(dt.UTC).strftime('%Y%m%d-%H%M%S')}"


def _ensure_backup(kube: Kube, live: JSON, now: Callable[[], dt.datetime]) -> tuple[str, str | None]:
    """(backup name, uid if we created it): an existing backup of the same content is reused."""
    for existing in kube.list("Secret", NAMESPACE, selector=f"{L_BACKUP_OF}={SECRET_NAME}"):
        if same_content(existing, live):
            return str(existing["metadata"]["name"]), None
    at = now()
    base = _backup_name(at)
    annotations = dict(live["metadata"].get("annotations") or {})
    annotations[A_BACKED_UP_AT] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations[A_BACKUP_RV] = str(live["metadata"].get("resourceVersion", ""))
    labels = dict(live["metadata"].get("labels") or {})
    labels[L_BACKUP_OF] = SECRET_NAME
    for n in range(1, 100):
        name = base if n == 1 else f"{base}-{n}"
        backup = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels, "annotations": annotations},
            "type": live.get("type", "Opaque"),
            "data": dict(live.get("data") or {}),
        }
        try:
            made = kube.create("Secret", backup, NAMESPACE)
            return name, str(made["metadata"].get("uid"))
        except AlreadyExists:
            found = kube.get("Secret", name, NAMESPACE)
            if found is not None and same_content(found, live):
                return name, None  # our own create, retried after a dropped answer
    raise ClusterError(f"context {kube.context}: cannot find a free name for the cacerts backup")


def _ensure_namespace(kube: Kube, manifest: JSON, undo: Undo | None = None) -> bool:
    name = str(manifest.get("metadata", {}).get("name", NAMESPACE))
    if kube.get("Namespace", name) is not None:
        return False
    try:
        made = kube.create("Namespace", manifest)
    except AlreadyExists:
        return False  # created meanwhile, or our create was applied and its answer lost
    if undo is not None:
        undo.created("Namespace", made)
    return True


def _airgap_annotations(secret: JSON | None) -> dict[str, str]:
    ann = (secret or {}).get("metadata", {}).get("annotations") or {}
    return {str(k): str(v) for k, v in ann.items() if str(k).startswith(ANNOTATION_PREFIX)}


def _with_annotations(live: JSON, desired: JSON) -> JSON:
    """``live`` (data, labels, other annotations, ``resourceVersion`` kept) with the desired ``airgap.dev/*``."""
    updated: JSON = json.loads(json.dumps(live))
    meta = updated.setdefault("metadata", {})
    others = {k: v for k, v in (meta.get("annotations") or {}).items() if not str(k).startswith(ANNOTATION_PREFIX)}
    meta["annotations"] = {**others, **_airgap_annotations(desired)}
    return updated


def _decide(live: JSON | None, desired: JSON, *, sequence: int | None, rotate: bool, where: str) -> str:
    """What the rules say for this live state: ``create``, ``unchanged``, ``annotate`` or ``rotate``.

    Raises :class:`Refused` for a rollback, or for different content without ``rotate``. Pure: the
    writer and the dry run both decide here, so a dry run says exactly what a run would do.
    """
    if live is None:
        return "create"
    live_cluster, our_cluster = _annotation(live, A_CLUSTER), _annotation(desired, A_CLUSTER)
    if live_cluster is not None and live_cluster != our_cluster:
        # Another cluster's CA in this cluster (a wrong --context, or a cross-cluster mix-up):
        # no flag replaces it, --rotate included.
        raise WrongCluster(
            f"{where} is annotated for cluster {live_cluster!r} ({A_CLUSTER}), not {our_cluster!r} of this "
            "bundle: refusing to replace it, --rotate or not (is --context the right cluster?)"
        )
    live_seq = _sequence(live)
    # Sequences count per cluster; here the live secret is this cluster's, or carries no cluster
    # annotation (older imports), where the sequence is compared, erring towards refusing.
    if live_seq is not None and sequence is not None and live_seq > sequence:
        raise Rollback(
            f"{where} holds bundle sequence {live_seq}, newer than this bundle's {sequence}: refusing a rollback"
        )
    if same_content(live, desired):
        return "unchanged" if _airgap_annotations(live) == _airgap_annotations(desired) else "annotate"
    if not rotate:
        live_fp = _live_fingerprint(live)
        seq_text = "unknown" if live_seq is None else str(live_seq)
        raise WouldOverwrite(
            f"{where} already exists with different content (sequence {seq_text}, CA fingerprint {live_fp}); "
            "left untouched; pass --rotate to replace it (the old one is kept as a backup)"
        )
    return "rotate"


def _desired(secret_manifest: JSON) -> JSON:
    _check_desired(secret_manifest)
    desired = {**secret_manifest, "metadata": {**secret_manifest["metadata"], "namespace": NAMESPACE}}
    desired["metadata"].pop("resourceVersion", None)
    return desired


def cacerts_needs(ns_exists: bool, action: str) -> list[Need]:
    """The writes an import makes for ``action`` (:func:`_decide`), for the ask-first reviews."""
    needs: list[Need] = [] if ns_exists else [("create", "namespaces", "", None)]
    if action == "create":
        needs.append(("create", "secrets", "", NAMESPACE))
    elif action == "annotate":
        needs.append(("update", "secrets", "", NAMESPACE))
    elif action == "rotate":
        needs += [(verb, "secrets", "", NAMESPACE) for verb in ("list", "create", "update", "delete")]
    return needs


def read_and_decide(
    kube: Kube, namespace_manifest: JSON, desired: JSON, *, sequence: int | None, rotate: bool
) -> tuple[bool, str]:
    """(istio-system exists, the action): GETs only, refusals (exit 4) before anything is written."""
    ns_name = str(namespace_manifest.get("metadata", {}).get("name", NAMESPACE))
    ns_exists = kube.get("Namespace", ns_name) is not None
    live = kube.get("Secret", SECRET_NAME, NAMESPACE) if ns_exists else None
    where = f"context {kube.context}: secret {NAMESPACE}/{SECRET_NAME}"
    return ns_exists, _decide(live, desired, sequence=sequence, rotate=rotate, where=where)


def apply_cacerts(
    kube: Kube,
    namespace_manifest: JSON,
    secret_manifest: JSON,
    *,
    sequence: int | None,
    rotate: bool = False,
    now: Callable[[], dt.datetime] | None = None,
) -> ImportResult:
    """Bring one cluster to ``secret_manifest`` under the rules in the module docstring.

    ``secret_manifest`` is trusted (it comes from a verified bundle); everything read from the
    cluster is not, and every write is conditioned on what was read. Ask first: the cluster is
    read, the rules decide, and every write the decision needs is reviewed (``SelfSubjectAccessReview``)
    before the first write: a denial is exit 4 with nothing written. A failure after writing began
    removes what this run created (istio-system, a backup).
    """
    desired = _desired(secret_manifest)
    ns_exists, action = read_and_decide(kube, namespace_manifest, desired, sequence=sequence, rotate=rotate)
    require(kube, cacerts_needs(ns_exists, action))
    undo = Undo(kube)
    try:
        return _apply_cacerts(kube, namespace_manifest, desired, sequence=sequence, rotate=rotate, now=now, undo=undo)
    except BaseException:
        undo.run(kube.notify)
        raise


def _apply_cacerts(
    kube: Kube,
    namespace_manifest: JSON,
    desired: JSON,
    *,
    sequence: int | None,
    rotate: bool,
    now: Callable[[], dt.datetime] | None,
    undo: Undo,
) -> ImportResult:
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    fingerprint = _annotation(desired, A_FINGERPRINT)
    ns_created = _ensure_namespace(kube, namespace_manifest, undo)
    where = f"context {kube.context}: secret {NAMESPACE}/{SECRET_NAME}"
    tried_create = False  # a create whose answer was lost may have been applied

    def result(outcome: str, backup: str | None = None) -> ImportResult:
        return ImportResult(kube.context, outcome, ns_created, backup, sequence, fingerprint)

    for _round in range(kube.policy.conflict_attempts):
        live = kube.get("Secret", SECRET_NAME, NAMESPACE)
        action = _decide(live, desired, sequence=sequence, rotate=rotate, where=where)
        if live is None:  # action "create"
            try:
                tried_create = True
                kube.create("Secret", desired, NAMESPACE)
            except AlreadyExists:
                continue  # someone (or our own retried create) made it: decide again from what is there
            return result("created")
        if action == "unchanged":
            return result("created" if tried_create else "unchanged")
        if action == "annotate":
            try:
                kube.replace("Secret", _with_annotations(live, desired), NAMESPACE)
            except Conflict:
                continue  # changed since we read it: decide again from the new state
            return result("annotated")
        backup, backup_uid = _ensure_backup(kube, live, clock)
        if backup_uid is not None:
            undo.made.append(("Secret", backup, NAMESPACE, backup_uid))
        replacement = {**desired, "metadata": {**desired["metadata"]}}
        replacement["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
        try:
            kube.replace("Secret", replacement, NAMESPACE)
        except Conflict:
            # Someone changed cacerts after we read it. Our backup saved a state we did not
            # replace: remove it (only if it is still ours) and decide again from the new state.
            if backup_uid is not None:
                kube.delete("Secret", backup, NAMESPACE, uid=backup_uid)
            continue
        undo.made.clear()  # cacerts now holds the bundle: the backup is the rotation's record
        return result("rotated", backup)
    raise ClusterError(
        f"{where}: still changing under us after {kube.policy.conflict_attempts} attempts; nothing replaced"
    )


def plan_cacerts(
    kube: Kube,
    namespace_manifest: JSON,
    secret_manifest: JSON,
    *,
    sequence: int | None,
    rotate: bool = False,
    now: Callable[[], dt.datetime] | None = None,
) -> ImportResult:
    """What :func:`apply_cacerts` would do now, from GETs only (nothing is written).

    Raises :class:`Refused` exactly when the import would be refused; the message starts with
    ``dry run:``. The live state can change before a real run; that run decides again.
    """
    desired = _desired(secret_manifest)
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    ns_name = str(namespace_manifest.get("metadata", {}).get("name", NAMESPACE))
    ns_missing = kube.get("Namespace", ns_name) is None
    live = None if ns_missing else kube.get("Secret", SECRET_NAME, NAMESPACE)
    where = f"context {kube.context}: secret {NAMESPACE}/{SECRET_NAME}"
    try:
        action = _decide(live, desired, sequence=sequence, rotate=rotate, where=where)
        require(kube, cacerts_needs(not ns_missing, action))  # the same questions a run asks first
    except Refused as exc:
        raise type(exc)(f"dry run: would refuse: {exc.message}") from exc  # keeps the cause
    outcome = {"create": "created", "unchanged": "unchanged", "annotate": "annotated", "rotate": "rotated"}[action]
    backup: str | None = None
    exists = False
    if action == "rotate" and live is not None:
        for existing in kube.list("Secret", NAMESPACE, selector=f"{L_BACKUP_OF}={SECRET_NAME}"):
            if same_content(existing, live):
                backup, exists = str(existing["metadata"]["name"]), True
                break
        else:
            backup = _backup_name(clock())
    return ImportResult(
        kube.context,
        outcome,
        ns_missing,
        backup,
        sequence,
        _annotation(desired, A_FINGERPRINT),
        dry_run=True,
        backup_exists=exists,
    )


def _record_accepted(prepared: Any) -> None:
    from airgap.connected.bundle_import import record_accepted

    record_accepted(prepared)


def _record(record: Callable[[Any], None], prepared: Any, result: ImportResult) -> None:
    """Record the accepted bundle; if that fails, say plainly that the cluster already holds it."""
    try:
        with _RECORD_LOCK:
            record(prepared)
    except AirgapError as exc:
        raise RecordFailed(
            f"context {result.context}: cacerts {result.outcome} in the cluster, but this host's record of "
            f"accepted bundles was not written: {exc.message}",
            exc.exit_code,
        ) from exc


def import_to_cluster(
    prepared: PreparedImportLike,
    *,
    context: str | None = None,
    rotate: bool = False,
    dry_run: bool = False,
    kubeconfig: Path | None = None,
    policy: RetryPolicy | None = None,
    notify: Callable[[str], None] | None = None,
    record: Callable[[Any], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
    on_imported: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Import a verified, prepared bundle into the cluster of ``context`` (absent: current context).

    Trusted: ``prepared`` (verified, decrypted and checked by ``prepare_import``). Not trusted: the
    cluster. Raises :class:`Refused` (exit 4) for a rollback or a different live ``cacerts``
    (without ``rotate``), :class:`ClusterError` (exit 5) when the cluster fails after retries. The
    accepted bundle is recorded locally (``record``, default ``record_accepted``) only after the
    cluster holds it; if that record fails, :class:`RecordFailed` says the cluster holds it.
    ``dry_run``: only reads, says what would happen (:func:`plan_cacerts`), records nothing.
    ``on_imported`` (e.g. the jump host's history) runs after the record, for each cluster.
    """
    sequence = getattr(prepared, "sequence", None)
    policy = policy or policy_from_env()
    with connect(context, kubeconfig=kubeconfig, policy=policy, notify=notify) as kube:
        step = plan_cacerts if dry_run else apply_cacerts
        result = step(
            kube,
            prepared.namespace_manifest(),
            prepared.cacerts_secret_manifest(),
            sequence=int(sequence) if sequence is not None else None,
            rotate=rotate,
            now=now,
        )
    if not dry_run:
        _record(record or _record_accepted, prepared, result)
        if on_imported is not None:
            _after_record(on_imported, result)
    return result


def _after_record(hook: Callable[[ImportResult], None], result: ImportResult) -> None:
    """The jump host's history of the import; if that fails, say plainly that the cluster holds it."""
    try:
        with _RECORD_LOCK:
            hook(result)
    except (AirgapError, OSError) as exc:
        why = exc.message if isinstance(exc, AirgapError) else str(exc)
        raise RecordFailed(
            f"context {result.context}: cacerts {result.outcome} in the cluster and recorded as accepted, but "
            f"the jump host's history was not written: {why}",
            exc.exit_code if isinstance(exc, AirgapError) else 3,
        ) from exc


def import_to_fleet(
    prepared: PreparedImportLike,
    contexts: Sequence[str],
    *,
    rotate: bool = False,
    dry_run: bool = False,
    parallel: int = DEFAULT_PARALLEL,
    kubeconfig: Path | None = None,
    policy: RetryPolicy | None = None,
    notify: Callable[[str], None] | None = None,
    record: Callable[[Any], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
    on_imported: Callable[[ImportResult], None] | None = None,
) -> FleetReport:
    """:func:`import_to_cluster` on every context, ``parallel`` at a time; one failure stops no other.

    ``prepared`` was verified and decrypted once, before this is called; nothing here re-reads the
    bundle. The local record is written once, after the first cluster that holds the bundle (if
    that write fails, the next success tries again); later clusters, and a failed cluster retried
    later with the same bundle, are accepted again because the sequence and bundle id are equal.
    ``notify`` gets each retry note (they name their context). A dry run writes nothing and records nothing.
    """
    if not dry_run:
        ask_import_fleet(prepared, contexts, rotate=rotate, kubeconfig=kubeconfig, policy=policy, parallel=parallel)
    record_fleet = record_once(record)  # default: record_accepted

    def import_context(ctx: str) -> Outcome:
        result = import_to_cluster(
            prepared,
            context=ctx,
            rotate=rotate,
            dry_run=dry_run,
            kubeconfig=kubeconfig,
            policy=policy,
            notify=notify,
            record=record_fleet,
            now=now,
            on_imported=on_imported,
        )
        return import_row(ctx, result)

    return run_fleet(contexts, import_context, parallel=parallel, on_done=on_done)


def import_row(context: str, result: ImportResult) -> Outcome:
    """One cluster's row of a fleet import's summary."""
    return Outcome(context, 0, result.result_word, result.detail, result)


def record_once(recorder: Callable[[Any], None] | None = None) -> Callable[[Any], None]:
    """A ``record`` for :func:`import_to_cluster` over a fleet: the accepted bundle is recorded
    (``recorder``, default ``record_accepted``) after the first cluster that holds it; when that
    write fails, the next cluster's success tries again."""
    write = recorder or _record_accepted
    recorded = threading.Event()

    def record(prepared: Any) -> None:
        if recorded.is_set():
            return
        write(prepared)  # serialised by _RECORD_LOCK in _record
        recorded.set()

    return record


def ask_import_fleet(
    prepared: PreparedImportLike,
    contexts: Sequence[str],
    *,
    rotate: bool,
    kubeconfig: Path | None = None,
    policy: RetryPolicy | None = None,
    parallel: int = DEFAULT_PARALLEL,
) -> None:
    """Ask every cluster of the fleet first (:func:`airgap.connected.access.ask_every`): an RBAC
    denial (or an insecure context without --insecure) anywhere is exit 4 before any cluster is written."""
    desired = _desired(prepared.cacerts_secret_manifest())
    sequence = getattr(prepared, "sequence", None)
    seq = int(sequence) if sequence is not None else None

    def needs_of(kube: Kube) -> list[Need]:
        ns_exists, action = read_and_decide(kube, prepared.namespace_manifest(), desired, sequence=seq, rotate=rotate)
        return cacerts_needs(ns_exists, action)

    ask_every(contexts, needs_of, kubeconfig=kubeconfig, policy=policy or policy_from_env(), parallel=parallel)
