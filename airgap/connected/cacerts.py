"""Put a verified bundle's CA material into a cluster as the ``cacerts`` Secret istiod reads.

Trusted: a prepared import (the bundles code has verified the bundle's signature, its cluster
name, its sequence against the local record, and the CA material itself before it hands us one).
Not trusted: the live cluster, which may hold anything, including a newer or a different
``cacerts`` written by someone else, or change it while we work.

The rules (issue 5):

1. ``istio-system`` is created when missing.
2. No ``cacerts`` yet: it is created, with the four keys (never fewer; ``ca-crl.pem`` too if given).
3. The same content already there: nothing changes; the result says "unchanged".
4. Different content: refused (exit 4), the live secret untouched, unless ``rotate``.
   Whatever ``rotate`` says, a live secret whose ``airgap.dev/sequence`` annotation is newer
   than the bundle's is a rollback and is refused.
5. ``rotate``: the live secret is first saved as ``cacerts-backup-<UTC time>`` (a rerun after a
   kill reuses an existing backup of the same content), then ``cacerts`` is replaced in one update
   conditioned on the ``resourceVersion`` we read. If someone else wrote in between (409
   Conflict), our backup is removed and the decision is made again from the new state.
6. The local record of accepted bundles is written only after the cluster is in the new state.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airgap.connected.fleet import DEFAULT_PARALLEL, FleetReport, Outcome, run_fleet
from airgap.connected.kube import AlreadyExists, Conflict, Kube, RetryPolicy, connect, policy_from_env
from airgap.errors import ClusterError, InvalidInput, Refused

JSON = dict[str, Any]

SECRET_NAME = "cacerts"  # noqa: S105  (a name, not a password)
NAMESPACE = "istio-system"
REQUIRED_KEYS = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")
OPTIONAL_KEYS = ("ca-crl.pem",)
A_BUNDLE = "airgap.dev/bundle-id"
A_SEQUENCE = "airgap.dev/sequence"
A_SIGNER = "airgap.dev/signer"
A_FINGERPRINT = "airgap.dev/ca-fingerprint"
L_BACKUP_OF = "airgap.dev/backup-of"
A_BACKED_UP_AT = "airgap.dev/backed-up-at"
A_BACKUP_RV = "airgap.dev/backup-of-resource-version"


_RECORD_LOCK = threading.Lock()


class PreparedImportLike(Protocol):
    """What :func:`import_to_cluster` needs from ``airgap.connected.bundle_import.PreparedImport``."""

    def namespace_manifest(self) -> JSON: ...

    def cacerts_secret_manifest(self) -> JSON: ...


@dataclass(frozen=True)
class ImportResult:
    """The cluster's state after an import: what was done, and the backup made (if any)."""

    context: str
    outcome: str  # "created" | "unchanged" | "rotated"
    namespace_created: bool
    backup: str | None
    sequence: int | None
    fingerprint: str | None

    def describe(self) -> str:
        parts = [f"context {self.context}: cacerts {self.outcome}"]
        if self.namespace_created:
            parts.append(f"namespace {NAMESPACE} created")
        if self.backup:
            parts.append(f"previous secret saved as {self.backup}")
        return "; ".join(parts)

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "outcome": self.outcome,
            "namespace_created": self.namespace_created,
            "backup": self.backup,
            "sequence": self.sequence,
            "ca_fingerprint": self.fingerprint,
        }


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


def same_content(live: JSON, desired: JSON) -> bool:
    """True when the live secret holds exactly the desired keys with the same bytes."""
    a, b = _decoded(live.get("data") or {}), _decoded(desired.get("data") or {})
    return a is not None and a == b


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


def _ensure_namespace(kube: Kube, manifest: JSON) -> bool:
    name = str(manifest.get("metadata", {}).get("name", NAMESPACE))
    if kube.get("Namespace", name) is not None:
        return False
    try:
        kube.create("Namespace", manifest)
    except AlreadyExists:
        return False  # created meanwhile, or our create was applied and its answer lost
    return True


def apply_cacerts(
    kube: Kube,
    namespace_manifest: JSON,
    secret_manifest: JSON,
    *,
    sequence: int | None,
    rotate: bool = False,
    now: Callable[[], dt.datetime] | None = None,
) -> ImportResult:
    """Bring one cluster to ``secret_manifest`` under the rules in the module docstring."""
    _check_desired(secret_manifest)
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    desired = {**secret_manifest, "metadata": {**secret_manifest["metadata"], "namespace": NAMESPACE}}
    desired["metadata"].pop("resourceVersion", None)
    fingerprint = _annotation(desired, A_FINGERPRINT)
    ns_created = _ensure_namespace(kube, namespace_manifest)
    where = f"context {kube.context}: secret {NAMESPACE}/{SECRET_NAME}"
    tried_create = False  # a create whose answer was lost may have been applied
    for _round in range(kube.policy.conflict_attempts):
        live = kube.get("Secret", SECRET_NAME, NAMESPACE)
        if live is None:
            try:
                tried_create = True
                kube.create("Secret", desired, NAMESPACE)
            except AlreadyExists:
                continue  # someone (or our own retried create) made it: decide again from what is there
            return ImportResult(kube.context, "created", ns_created, None, sequence, fingerprint)
        if same_content(live, desired):
            outcome = "created" if tried_create else "unchanged"
            return ImportResult(kube.context, outcome, ns_created, None, sequence, fingerprint)
        live_seq = _sequence(live)
        if live_seq is not None and sequence is not None and live_seq > sequence:
            raise Refused(
                f"{where} holds bundle sequence {live_seq}, newer than this bundle's {sequence}: refusing a rollback"
            )
        if not rotate:
            live_fp = _annotation(live, A_FINGERPRINT) or "unknown"
            seq_text = "unknown" if live_seq is None else str(live_seq)
            raise Refused(
                f"{where} already exists with different content (sequence {seq_text}, CA fingerprint {live_fp}); "
                "left untouched; pass --rotate to replace it (the old one is kept as a backup)"
            )
        backup, backup_uid = _ensure_backup(kube, live, clock)
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
        return ImportResult(kube.context, "rotated", ns_created, backup, sequence, fingerprint)
    raise ClusterError(
        f"{where}: still changing under us after {kube.policy.conflict_attempts} attempts; nothing replaced"
    )


def _record_accepted(prepared: Any) -> None:
    from airgap.connected.bundle_import import record_accepted

    record_accepted(prepared)


def import_to_cluster(
    prepared: PreparedImportLike,
    *,
    context: str | None = None,
    rotate: bool = False,
    kubeconfig: Path | None = None,
    policy: RetryPolicy | None = None,
    notify: Callable[[str], None] | None = None,
    record: Callable[[Any], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> ImportResult:
    """Import a verified, prepared bundle into the cluster of ``context`` (absent: current context).

    Raises :class:`Refused` (exit 4) for a different or newer live ``cacerts`` (without
    ``rotate``), :class:`ClusterError` (exit 5) when the cluster fails after retries. The accepted
    bundle is recorded locally only after the cluster holds it.
    """
    sequence = getattr(prepared, "sequence", None)
    policy = policy or policy_from_env()
    with connect(context, kubeconfig=kubeconfig, policy=policy, notify=notify) as kube:
        result = apply_cacerts(
            kube,
            prepared.namespace_manifest(),
            prepared.cacerts_secret_manifest(),
            sequence=int(sequence) if sequence is not None else None,
            rotate=rotate,
            now=now,
        )
    with _RECORD_LOCK:
        (record or _record_accepted)(prepared)
    return result


def import_to_fleet(
    prepared: PreparedImportLike,
    contexts: Sequence[str],
    *,
    rotate: bool = False,
    parallel: int = DEFAULT_PARALLEL,
    kubeconfig: Path | None = None,
    policy: RetryPolicy | None = None,
    notify: Callable[[str], None] | None = None,
    record: Callable[[Any], None] | None = None,
) -> FleetReport:
    """:func:`import_to_cluster` on every context, ``parallel`` at a time; one failure stops no other.

    The local record is written after each cluster that succeeds (recording is idempotent and
    serialised here).
    """

    def one(ctx: str) -> Outcome:
        result = import_to_cluster(
            prepared, context=ctx, rotate=rotate, kubeconfig=kubeconfig, policy=policy, notify=notify, record=record
        )
        detail = f"backup {result.backup}" if result.backup else ""
        return Outcome(ctx, 0, result.outcome, detail, result)

    return run_fleet(contexts, one, parallel=parallel)
