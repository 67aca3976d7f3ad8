"""The shared import path of a transfer bundle on the jump host.

:func:`prepare_import` verifies the bundle (:func:`airgap.core.bundle.open_bundle`), refuses a
bundle for another cluster, an expired one, or one older than the last this host accepted for the
same cluster and signer, decrypts the CA key with the operator's age identity, and checks the CA
material as istiod would. Only then does it return a :class:`PreparedImport`, whose manifests the
``--output-dir`` renderer and the Kubernetes writer both use. :func:`record_accepted` moves the
anti-rollback state forward; call it only after the material was written somewhere.

State: ``$AIRGAP_STATE_DIR``, else ``$XDG_STATE_HOME/airgap``, else ``~/.local/state/airgap``;
file ``accepted.json``, written atomically under an exclusive lock, only after every check passed.
Each record keeps the bundle's sequence, id and ``ceremony_head`` (the officer's ceremony-log head
when the bundle was sealed), so an auditor can later run ``airgap audit verify PKI --head H``.
With ``--output-dir`` (:func:`import_to_dir`) the record is written after the files are complete
under temporary names and before they are published: an unwritable state folder leaves no files.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from airgap.connected.render import render_files
from airgap.core import age, names
from airgap.core.atomic import (
    ensure_dir,
    write_replace,
)
from airgap.core.bundle import (
    CA_CERT,
    CA_CRL,
    CA_KEY,
    CA_KEY_AGE,
    CERT_CHAIN,
    ROOT_CERT,
    VerifiedBundle,
    check_bundled_crl,
    open_bundle,
)
from airgap.core.canonical import load_json, state_json
from airgap.core.history import resolve_state_dir
from airgap.core.keys import PublicKey, load_private_key, load_private_key_pem, spki_sha256
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.locking import exclusive_lock
from airgap.core.names import ISTIO_NAMESPACE
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.x509 import CAMaterial, check_ca_material
from airgap.errors import InvalidInput, Refused, VerificationError

NAMESPACE = ISTIO_NAMESPACE
SECRET_NAME = "cacerts"  # noqa: S105 - a Secret's name, not a password
ANN_BUNDLE_ID = "airgap.dev/bundle-id"
ANN_SEQUENCE = "airgap.dev/sequence"
ANN_SIGNER = "airgap.dev/signer"
ANN_FINGERPRINT = "airgap.dev/ca-fingerprint"
ANN_CLUSTER = "airgap.dev/cluster"
ANN_CEREMONY_HEAD = "airgap.dev/ceremony-head"
STATE_FILE = "accepted.json"
RENDERED_NAMESPACE = "00-namespace.yaml"
RENDERED_SECRET = "10-cacerts-secret.yaml"  # noqa: S105 - a file name
RENDERED_SECRET_SOPS = "10-cacerts-secret.sops.yaml"  # noqa: S105 - a file name


@dataclass(frozen=True)
class AcceptedRecord:
    """What this host keeps about the last bundle it accepted for a cluster and signer."""

    sequence: int
    bundle_id: str
    ceremony_head: str | None = None


def _state_key(cluster: str, signer: str) -> str:
    return f"{cluster}/{signer}"


def _read_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": 1, "accepted": {}}
    try:
        doc = load_json(path.read_bytes(), what=f"{path}: import state", invalid=_CORRUPT_STATE)
        if not isinstance(doc, dict) or not isinstance(doc.get("accepted"), dict):
            raise ValueError("bad layout")
        for v in doc["accepted"].values():
            if not isinstance(v, dict) or type(v.get("sequence")) is not int or not isinstance(v.get("bundle_id"), str):
                raise ValueError("bad entry")
            if not isinstance(v.get("ceremony_head"), str | None):  # absent in records made before it existed
                raise ValueError("bad ceremony_head")
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{path}: import state {_CORRUPT_STATE}") from exc
    return doc


_CORRUPT_STATE = "is corrupt; fix or remove it deliberately"


def last_accepted(cluster: str, signer: str, *, state: Path | None = None) -> AcceptedRecord | None:
    """The last bundle this host accepted for ``cluster`` signed by ``signer`` (key id), if any."""
    doc = _read_state(resolve_state_dir(state) / STATE_FILE)
    entry = doc["accepted"].get(_state_key(cluster, signer))
    return _record_of(entry) if entry else None


def _record_of(entry: dict[str, Any]) -> AcceptedRecord:
    return AcceptedRecord(int(entry["sequence"]), str(entry["bundle_id"]), entry.get("ceremony_head"))


def _check_not_rollback(bundle: VerifiedBundle, record: AcceptedRecord | None) -> None:
    if record is None:
        return
    seq = bundle.sequence
    if seq < record.sequence:
        raise Refused(
            f"{bundle.path}: sequence {seq} is older than sequence {record.sequence} already accepted for cluster "
            f"{bundle.cluster} (replayed or rolled-back bundle)"
        )
    if seq == record.sequence and bundle.bundle_id != record.bundle_id:
        raise Refused(
            f"{bundle.path}: sequence {seq} was already accepted for cluster {bundle.cluster} "
            f"with another bundle ({record.bundle_id})"
        )


@dataclass(frozen=True)
class PreparedImport:
    """A verified, decrypted and checked bundle, ready to render or write to a cluster.

    ``sequence`` and ``signer`` are exposed for the live cluster's rollback check (compare with
    the ``airgap.dev/sequence`` / ``airgap.dev/signer`` annotations of the existing secret).
    """

    bundle: VerifiedBundle
    material: CAMaterial = field(repr=False)  # holds the decrypted CA key: never in a repr or log
    ca_crl_pem: bytes | None = field(default=None, repr=False)
    state: Path = field(default_factory=resolve_state_dir)

    @property
    def cluster(self) -> str:
        return self.bundle.cluster

    @property
    def sequence(self) -> int:
        return self.bundle.sequence

    @property
    def signer(self) -> str:
        return self.bundle.signer_key_id

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id

    @property
    def fingerprint(self) -> str:
        return self.material.fingerprint

    @property
    def ceremony_head(self) -> str | None:
        """The officer's ceremony-log head the signed manifest carries (None: no log, or format 1).

        Verified only as part of the signed manifest: it says which log state the officer sealed
        at; ``airgap audit verify PKI --trust officer.pub --head H`` checks the log still holds it.
        """
        return self.bundle.ceremony_head

    def trust_facts(self, context: str = "(this bundle)") -> Any:
        """The bundle's issuing root and trusted roots, as :mod:`airgap.connected.trust` compares them."""
        from airgap.connected.trust import pem_facts

        return pem_facts(self.material.cert_chain_pem, self.material.root_cert_pem, context=context)

    def history_fields(self, context: str | None, forced_split: str | None) -> dict[str, Any]:
        """The ``bundle-import`` event of the jump host's history (the auditor's report reads these names)."""
        return {
            "cluster": self.cluster,
            "context": context,
            "bundle_id": self.bundle_id,
            "sequence": self.sequence,
            "signer": self.signer,
            "ceremony_head": self.ceremony_head,
            "ca_fingerprint": self.fingerprint,
            "forced_split": forced_split,
        }

    def annotations(self) -> dict[str, str]:
        ann = {
            ANN_BUNDLE_ID: self.bundle_id,
            ANN_CLUSTER: self.cluster,
            ANN_FINGERPRINT: self.fingerprint,
            ANN_SEQUENCE: str(self.sequence),
            ANN_SIGNER: self.signer,
        }
        if self.ceremony_head is not None:
            ann[ANN_CEREMONY_HEAD] = self.ceremony_head
        return ann

    def secret_data(self) -> dict[str, str]:
        """The ``cacerts`` data keys, base64, exactly as istiod's plugged-in CA reads them."""
        files = {
            names.CA_CERT: self.material.ca_cert_pem,  # the Secret's keys: the file names, not bundle members
            names.CA_KEY: self.material.ca_key_pem,
            names.CERT_CHAIN: self.material.cert_chain_pem,
            names.ROOT_CERT: self.material.root_cert_pem,
        }
        if self.ca_crl_pem is not None:
            files[names.CA_CRL] = self.ca_crl_pem
        return {k: base64.b64encode(v).decode("ascii") for k, v in sorted(files.items())}

    def namespace_manifest(self) -> dict[str, Any]:
        """The ``istio-system`` Namespace (plain dict, ready for YAML or the Kubernetes API)."""
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}

    def cacerts_secret_manifest(self) -> dict[str, Any]:
        """The ``cacerts`` Secret in ``istio-system``: type Opaque, four (or five) keys, annotations."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET_NAME,
                "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "airgap"},
                "annotations": self.annotations(),
            },
            "type": "Opaque",
            "data": self.secret_data(),
        }


def prepare_import(
    bundle_path: Path,
    trust: Sequence[PublicKey],
    identity: Path | None,
    identity_passphrase: bytes | None,
    cluster: str,
    state_dir: Path | None = None,
    now: dt.datetime | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress = NO_PROGRESS,
    local_key: Path | None = None,
    local_key_passphrase: bytes | None = None,
) -> PreparedImport:
    """Every check of ``bundle import``, in order; returns only when all passed. Writes nothing.

    1. :func:`open_bundle` (format, signature by a ``trust`` key, hashes, completeness, expiry);
    2. the bundle is for ``cluster`` (else :class:`Refused`, exit 4);
    3. its sequence is not older than the last accepted here for this cluster and signer (exit 4);
    4. the CA key decrypts with ``identity`` (exit 3 if the identity is not a recipient), or, for a
       keyless bundle (format 3: the key is held here), ``local_key`` opens (exit 3) and is the key
       the signed manifest binds (``held_key.key_id``, exit 1);
    5. the CA material passes istiod's checks, the key matching ``ca-cert.pem`` included (exit 1).
    """
    bundle_path = Path(bundle_path)
    source = str(bundle_path)
    t = now or dt.datetime.now(dt.UTC)
    # 1. verify
    bundle = open_bundle(bundle_path, trust, limits=limits, now=t, progress=progress)
    # 2. cluster binding
    if bundle.cluster != cluster:
        raise Refused(f"{source}: bundle was made for cluster {bundle.cluster!r}, not {cluster!r}")
    # 3. rollback
    sdir = resolve_state_dir(state_dir)
    _check_not_rollback(bundle, last_accepted(bundle.cluster, bundle.signer_key_id, state=sdir))
    # 4. decrypt (or, keyless: the key held here)
    held = bundle.manifest.held_key
    if held is None and local_key is not None:
        raise InvalidInput(f"{source}: the bundle carries its CA key; --key is only for keyless bundles")
    if held is not None:
        if local_key is None:
            raise InvalidInput(
                f"{source}: the bundle carries no CA key (held elsewhere); "
                f"give --key JUMPDIR/{bundle.cluster}/ca-key.pem"
            )
        local = load_private_key(local_key, local_key_passphrase)
        if spki_sha256(local) != held.key_id:
            raise VerificationError(
                f"{local_key}: this key ({spki_sha256(local)}) is not the key the bundle was issued for ({held.key_id})"
            )
        key_pem = local.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    elif bundle.has_member(CA_KEY_AGE):
        if identity is None:
            raise InvalidInput(f"{source}: the CA key is encrypted; give --identity KEY")
        identities = age.load_identities(identity, identity_passphrase)
        mine = {str(i.to_public()) for i in identities}
        if not mine & set(bundle.manifest.recipients):
            raise InvalidInput(f"{identity}: this identity is not one of the bundle's recipients")
        key_pem = age.decrypt(
            bundle.member_bytes(CA_KEY_AGE), identities, source=f"{source}: {CA_KEY_AGE}", max_size=limits.max_pem_size
        )
    else:
        key_pem = bundle.member_bytes(CA_KEY)
    # 5. the CA material, as istiod checks it
    key = load_private_key_pem(key_pem, None, source=f"{source}: ca-key.pem")
    material = check_ca_material(
        ca_cert_pem=bundle.member_bytes(CA_CERT),
        ca_key=key,
        ca_key_pem=key_pem,
        cert_chain_pem=bundle.member_bytes(CERT_CHAIN),
        root_cert_pem=bundle.member_bytes(ROOT_CERT),
        at=t,
        source=source,
    )
    if held is not None and spki_sha256(material.ca_cert.public_key()) != held.key_id:  # type: ignore[arg-type]
        raise VerificationError(f"{source}: ca-cert.pem does not certify the key the manifest binds")
    crl = bundle.member_bytes(CA_CRL) if bundle.has_member(CA_CRL) else None
    if crl is not None:
        check_bundled_crl(crl, material, source=source, cluster=bundle.cluster)
    return PreparedImport(bundle=bundle, material=material, ca_crl_pem=crl, state=sdir)


@contextlib.contextmanager
def _state_lock(sdir: Path) -> Iterator[None]:
    ensure_dir(sdir, mode=0o700)
    with exclusive_lock(
        sdir / ".lock",
        holder=f"another bundle import recording into {sdir}",
        unwritable=f"{sdir}: state folder is not writable",
    ):
        yield


def record_accepted(prepared: PreparedImport) -> None:
    """Move this host's anti-rollback state to ``prepared``'s sequence (after a successful write).

    Re-checks under the lock, so two concurrent imports cannot both move it (exit 4 for the loser).
    """
    with _state_lock(prepared.state):
        path = prepared.state / STATE_FILE
        doc = _read_state(path)
        key = _state_key(prepared.cluster, prepared.signer)
        entry = doc["accepted"].get(key)
        _check_not_rollback(prepared.bundle, _record_of(entry) if entry else None)
        doc["accepted"][key] = {
            "sequence": prepared.sequence,
            "bundle_id": prepared.bundle_id,
            "ceremony_head": prepared.ceremony_head,
        }
        write_replace(path, state_json(doc), mode=0o600)


def render_yaml(doc: dict[str, Any]) -> bytes:
    """Deterministic YAML: sorted keys, block style, no render timestamps."""
    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, explicit_start=True).encode("utf-8")


def rendered_files(prepared: PreparedImport, recipients: Sequence[str] | None = None) -> dict[str, bytes]:
    """The flat ``--output-dir`` files; with ``recipients`` the Secret is a SOPS file (``*.sops.yaml``)."""
    from airgap.core import sops

    secret = prepared.cacerts_secret_manifest()
    return {
        RENDERED_NAMESPACE: render_yaml(prepared.namespace_manifest()),
        (RENDERED_SECRET_SOPS if recipients else RENDERED_SECRET): sops.render_secret(secret, recipients or None),
    }


def _refuse_rollback(prepared: PreparedImport, where: Path) -> Callable[[bytes], None]:
    """A rendered cacerts file may not be replaced by an older bundle of the same signer (exit 4)."""

    def check(existing: bytes) -> None:
        try:
            doc = yaml.safe_load(existing)
            ann = doc["metadata"]["annotations"]
            seq, signer = int(str(ann[ANN_SEQUENCE])), str(ann[ANN_SIGNER])
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            return  # not ours or unreadable: replacing it still needs --rotate
        if signer == prepared.signer and seq > prepared.sequence:
            raise Refused(
                f"{where}: holds bundle sequence {seq}, newer than this bundle's {prepared.sequence}: "
                "refusing a rollback"
            )

    return check


def cluster_files(prepared: PreparedImport, folder: Path, recipients: Sequence[str] | None) -> list[Any]:
    """The fleet layout's files for one cluster folder (see :mod:`airgap.connected.gitops`)."""
    from airgap.connected.gitops import NAMESPACE_FILE, RenderedFile

    name, twin = (RENDERED_SECRET_SOPS, RENDERED_SECRET) if recipients else (RENDERED_SECRET, RENDERED_SECRET_SOPS)
    return [
        RenderedFile(NAMESPACE_FILE, data=render_yaml(prepared.namespace_manifest()), keep_existing=True),
        RenderedFile(
            name,
            secret=prepared.cacerts_secret_manifest(),
            mode=0o600,
            check_existing=_refuse_rollback(prepared, folder / name),
            supersedes=(twin,),
        ),
    ]


def import_to_tree(
    prepared: PreparedImport,
    root: Path,
    clusters: Sequence[str],
    *,
    recipients: Sequence[str] | None,
    rotate: bool = False,
    parallel: int = 8,
) -> Any:
    """``bundle import --context … --output-dir DIR``: the fleet layout, one folder per context.

    Records the accepted bundle first (an equal sequence and bundle id is accepted again, so a
    cluster that failed can be rendered again), then renders every cluster folder ``parallel``
    at a time; one refused cluster stops no other. Returns the fleet report.
    """
    from airgap.connected.fleet import Outcome, run_fleet
    from airgap.connected.gitops import check_cluster_name, cluster_folder, render_cluster, write_sops_config

    for c in clusters:
        check_cluster_name(c)
    binary = None
    if recipients:
        from airgap.core.sops import find_sops

        binary = find_sops()
    ensure_dir(Path(root))
    record_accepted(prepared)
    if recipients:
        write_sops_config(root, recipients)

    def render_context(ctx: str) -> Outcome:
        files = cluster_files(prepared, cluster_folder(root, ctx), recipients)
        done = render_cluster(root, ctx, files, recipients=recipients, replace=rotate, binary=binary)
        return Outcome(ctx, 0, "rendered" if done.changed else "unchanged", done.summary(), done)

    report = run_fleet(clusters, render_context, parallel=parallel)
    if any(o.exit_code == 0 for o in report.outcomes):
        record_import(prepared, None, None)  # rendered, not applied: context null
    return report


def render_to_dir(
    prepared: PreparedImport,
    out_dir: Path,
    *,
    before_publish: Callable[[], None] | None = None,
    recipients: Sequence[str] | None = None,
) -> list[Path]:
    """Write the Namespace and Secret YAML into ``out_dir`` (created when missing).

    Every check already passed (a PreparedImport exists). The files are written completely under
    temporary names first; ``before_publish`` (e.g. :func:`record_accepted`) runs then, and only
    if it returns are they published. A missing folder is built beside its final name and renamed
    into place; in an existing folder existing files are never replaced (exit 4) and a failure
    leaves none of ours behind. The files hold the CA private key (in plaintext unless
    ``recipients``: then the Secret is SOPS-encrypted before anything is written): mode 0600.
    """
    files = rendered_files(prepared, recipients)
    return render_files(Path(out_dir), files, file_mode=0o600, dir_mode=0o700, before_publish=before_publish)


def import_to_dir(prepared: PreparedImport, out_dir: Path, recipients: Sequence[str] | None = None) -> list[Path]:
    """``bundle import --output-dir``: render, record the accepted bundle, then publish the files.

    The record comes before publishing, so an unwritable or locked-out state folder (exit 3) or a
    lost race with another import (exit 4) leaves nothing in ``out_dir``. If publishing fails after
    the record, importing the same bundle again is allowed (same sequence and bundle id). Once the
    files are published, the import goes into the jump host's history (context null).
    """
    written = render_to_dir(prepared, out_dir, before_publish=lambda: record_accepted(prepared), recipients=recipients)
    record_import(prepared, None, None)
    return written


def record_import(prepared: PreparedImport, context: str | None, forced_split: str | None) -> None:
    """One ``bundle-import`` event in the jump host's history (:mod:`airgap.core.history`)."""
    from airgap.core.history import BUNDLE_IMPORT, record_event

    record_event(BUNDLE_IMPORT, prepared.history_fields(context, forced_split), state=prepared.state)


def history_hook(prepared: PreparedImport, forced_split: str | None) -> Callable[[Any], None]:
    """For ``import_to_cluster(on_imported=…)``: each cluster that holds the bundle gets its event."""

    def hook(result: Any) -> None:
        record_import(prepared, str(result.context), forced_split)

    return hook


__all__ = [
    "ANN_BUNDLE_ID",
    "ANN_CEREMONY_HEAD",
    "ANN_FINGERPRINT",
    "ANN_SEQUENCE",
    "ANN_SIGNER",
    "AcceptedRecord",
    "PreparedImport",
    "cluster_files",
    "history_hook",
    "import_to_dir",
    "import_to_tree",
    "last_accepted",
    "prepare_import",
    "record_accepted",
    "record_import",
    "render_to_dir",
    "rendered_files",
    "resolve_state_dir",
]
