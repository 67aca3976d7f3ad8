"""``airgap bundle create``: seal a cluster's CA material into a signed, encrypted bundle.

Runs on the offline root host. Trusted inputs: the officer's PKI folder, signing key and the
recipients they name. The cluster's CA material is checked as istiod would (key matches, chain to
the root, not expired) before anything is sealed, so a bundle never carries broken material.

The per-cluster sequence number lives in ``PKI/state/sequence.json`` (written atomically, under
the PKI lock). It is reserved before the bundle is written: a failed run leaves a harmless gap,
never two bundles with one number.

Ceremony log: when the PKI folder keeps one (``PKI/ceremony.log``), sealing is an act like any
other. Under the PKI lock, before anything changes, the log is checked and the officer's key
confirmed (:func:`airgap.offline.ceremony.prepare`: a refusal consumes no sequence number and writes
no file); the log's head hash goes into the manifest as ``ceremony_head``; the ``bundle`` entry is
appended once the bundle is complete but BEFORE it is published under its final name, so a
published bundle always has its entry. (If publishing then fails, the log names a bundle that
does not exist: a harmless gap, like the sequence number.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from airgap.core import age, names
from airgap.core import x509 as clock
from airgap.core.atomic import AtomicFile, ensure_dir, write_replace
from airgap.core.bundle import (
    CA_CERT,
    CA_CRL,
    CA_KEY,
    CA_KEY_AGE,
    CERT_CHAIN,
    FORMAT_VERSION,
    INCLUDE_NAME,
    MAX_EXPIRY_DAYS,
    MAX_USTAR_SIZE,
    ROOT_CERT,
    BundleWriter,
    Manifest,
    MemberEntry,
    check_bundled_crl,
    check_signer_key,
    format_time,
    sign_manifest,
)
from airgap.core.bundle.manifest import KEYLESS_FORMAT_VERSION, HeldKey
from airgap.core.canonical import state_json
from airgap.core.files import read_capped
from airgap.core.keys import PrivateKey, key_file_is_encrypted, load_private_key, load_private_key_pem, spki_sha256
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.x509 import CAMaterial, check_ca_material
from airgap.errors import Expired, InvalidInput, Malformed, NotFound, Refused, WouldOverwrite
from airgap.offline import ceremony
from airgap.offline.act import pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.inventory import IntermediateRecord, parse_state, read_inventory
from airgap.offline.layout import SEQUENCE, STATE, PkiLayout, check_cluster_name

DEFAULT_EXPIRY_DAYS = 30
SEQUENCE_FILE = Path(STATE) / SEQUENCE


@dataclass(frozen=True)
class SealedBundle:
    """What ``bundle create`` wrote."""

    path: Path
    manifest: Manifest
    log_entry: int | None = None  # the ceremony-log entry recording this bundle (None: no log)

    @property
    def ceremony_head(self) -> str | None:
        return self.manifest.ceremony_head


@dataclass(frozen=True)
class SecretMember:
    """A cacerts member's bytes as they go into the archive (ciphertext when encrypted)."""

    path: str
    data: bytes
    encrypted: bool


def sign_key_is_encrypted(path: Path) -> bool:
    """True when the signing key file needs a passphrase (so the CLI knows whether to ask)."""
    return key_file_is_encrypted(path, "signing key")


def cluster_key_is_encrypted(pki_dir: Path, cluster: str) -> bool:
    try:
        return key_file_is_encrypted(Path(pki_dir) / check_cluster_name(cluster) / names.CA_KEY)
    except InvalidInput:
        return False  # reported properly by seal_bundle


# -- sequence numbers ------------------------------------------------------------------------------
def _read_sequences(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": 1, "clusters": {}}
    try:
        doc = parse_state(path.read_bytes(), source=str(path), what="sequence state")
        if not isinstance(doc.get("clusters"), dict):
            raise ValueError("bad layout")
        for v in doc["clusters"].values():
            if not isinstance(v, dict) or not isinstance(v.get("sequence"), int) or isinstance(v["sequence"], bool):
                raise ValueError("bad entry")
    except (ValueError, OSError, InvalidInput) as exc:
        raise Malformed(f"{path}: sequence state is corrupt; restore it from backup") from exc
    return doc


def last_sequence(pki_dir: Path, cluster: str) -> int:
    """The last sequence number sealed for ``cluster`` in this PKI folder (0 if none)."""
    doc = _read_sequences(Path(pki_dir) / SEQUENCE_FILE)
    entry = doc["clusters"].get(cluster)
    return int(entry["sequence"]) if entry else 0


def _reserve_sequence(pki_dir: Path, cluster: str, bundle_id: str, created: str) -> int:
    """Under the PKI lock: next number for ``cluster``, recorded before the bundle is written."""
    path = Path(pki_dir) / SEQUENCE_FILE
    doc = _read_sequences(path)
    entry = doc["clusters"].get(cluster)
    seq = (int(entry["sequence"]) if entry else 0) + 1
    doc["clusters"][cluster] = {"sequence": seq, "bundle_id": bundle_id, "created": created}
    ensure_dir(path.parent, mode=0o700)
    write_replace(path, state_json(doc))
    return seq


# -- building --------------------------------------------------------------------------------------
def _read_pki_file(path: Path, limits: Limits) -> bytes:
    if not path.exists() and not path.is_symlink():
        raise Refused(f"{path}: missing; the cluster's CA material is incomplete")
    return read_capped(path, limits.max_pem_size, "PEM file")


def cacerts_members(
    pki_dir: Path,
    cluster: str,
    *,
    pki_passphrase: bytes | None,
    recipients: Sequence[str],
    encrypt: bool,
    limits: Limits = DEFAULT_LIMITS,
    now: dt.datetime | None = None,
) -> list[SecretMember]:
    """Read and check ``PKI/<cluster>/``; return the cacerts members, ``ca-key.pem`` age-encrypted.

    The CA key is opened with ``pki_passphrase`` and sealed as plain PKCS#8 (istiod reads it so)
    inside the age envelope, or in the clear only when ``encrypt`` is False (``--no-encrypt``).
    """
    d = Path(pki_dir) / check_cluster_name(cluster)
    if not d.is_dir():
        raise Refused(f"{d}: no CA for cluster {cluster!r}; run 'airgap ca issue {cluster} --dir {pki_dir}' first")
    cert = _read_pki_file(d / names.CA_CERT, limits)
    chain = _read_pki_file(d / names.CERT_CHAIN, limits)
    root = _read_pki_file(d / names.ROOT_CERT, limits)
    key_pem_stored = _read_pki_file(d / names.CA_KEY, limits)
    key = load_private_key_pem(key_pem_stored, pki_passphrase, source=str(d / names.CA_KEY))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    refuse_out_of_date(d, cluster, pki_dir, chain, now)
    refuse_foreign_roots(Path(pki_dir), cluster, root)
    material = check_ca_material(
        ca_cert_pem=cert,
        ca_key=key,
        ca_key_pem=key_pem,
        cert_chain_pem=chain,
        root_cert_pem=root,
        at=now,
        source=str(d),
    )
    if encrypt:
        key_member = SecretMember(CA_KEY_AGE, age.encrypt(key_pem, list(recipients)), True)
    else:
        key_member = SecretMember(CA_KEY, key_pem, False)
    out = [SecretMember(CA_CERT, cert, False), key_member, SecretMember(CERT_CHAIN, chain, False)]
    out.append(SecretMember(ROOT_CERT, root, False))
    crl = d / names.CA_CRL
    if crl.exists():
        crl_pem = _read_pki_file(crl, limits)
        check_bundled_crl(crl_pem, material, source=str(d), cluster=cluster)
        out.append(SecretMember(CA_CRL, crl_pem, False))
    _refuse_revoked(Path(pki_dir), cluster, material.ca_cert)
    _refuse_unrecorded(Path(pki_dir), cluster, material)
    return out


def _refuse_unrecorded(pki_dir: Path, cluster: str, material: CAMaterial) -> None:
    """Only the intermediate the inventory records for ``cluster`` ships (exit 4): a folder whose
    certificate and key were replaced (another cluster's copied in) never goes out under its name."""
    rec = read_inventory(PkiLayout(pki_dir).inventory).current(cluster)
    if rec is None or rec.fingerprint != material.fingerprint:
        recorded = f"sha256 {rec.fingerprint}" if rec is not None else "nothing"
        raise Refused(
            f"{pki_dir / cluster}: ca-cert.pem (sha256 {material.fingerprint}) is not the intermediate the "
            f"inventory records for cluster {cluster} ({recorded}); see 'airgap ca list --dir {pki_dir}'"
        )


def refuse_out_of_date(d: Path, cluster: str, pki_dir: Path, chain_pem: bytes, now: dt.datetime | None) -> None:
    """The PKI's own chain (``cert-chain.pem``: the intermediate to its root) expired or not yet valid
    is a precondition not met (exit 4), with the remedy: a bundle is never sealed with it. (From a
    bundle being imported the same finding is :func:`check_ca_material`'s verification failure.)"""
    from airgap.core.x509 import load_certs_pem

    t = now or clock.now()
    for cert in load_certs_pem(chain_pem, source=f"{d}/cert-chain.pem"):
        who = cert.subject.rfc4514_string()
        if cert.not_valid_after_utc <= t:
            state = f"expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        elif cert.not_valid_before_utc > t:
            state = f"is not valid until {cert.not_valid_before_utc:%Y-%m-%d}"
        else:
            continue
        raise Expired(
            f"{d}: certificate {who} {state}; a bundle is never sealed with it: run 'airgap ca rotate {cluster} "
            f"--dir {pki_dir}' (or 'airgap ca rotate-root' for an expired root) and bundle the replacement"
        )


def refuse_foreign_roots(pki_dir: Path, cluster: str, root_pem: bytes) -> None:
    """A cluster's ``root-cert.pem`` carrying a root the PKI does not hold (a lost ``next-root/``) is
    never sealed into a bundle: clusters would trust a root whose key may be someone else's (exit 4)."""
    foreign = PkiLayout(pki_dir).foreign_roots(cluster, root_pem)
    if foreign:
        raise Refused(
            f"{pki_dir / cluster / names.ROOT_CERT}: carries root sha256 {', '.join(foreign)}, which is neither "
            f"the root nor a next root of {pki_dir} (a lost or moved next-root/ folder?); a bundle is never "
            f"sealed with it: run 'airgap audit verify {pki_dir}' to see what is missing"
        )


def held_elsewhere(pki_dir: Path, cluster: str) -> IntermediateRecord | None:
    """The inventory record of ``cluster``'s current intermediate when its key is held elsewhere
    (``ca sign``: no ``ca-key.pem`` in the PKI folder), else None."""
    layout = PkiLayout(Path(pki_dir))
    if (layout.cluster_dir(cluster) / names.CA_KEY).exists():
        return None
    rec = read_inventory(layout.inventory).current(cluster)
    return rec if rec is not None and rec.held_elsewhere else None


def keyless_members(
    pki_dir: Path,
    cluster: str,
    held: IntermediateRecord,
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: dt.datetime | None = None,
) -> list[SecretMember]:
    """The public cacerts members of a cluster whose key is held elsewhere, checked as istiod would
    (except the key, which is not here) and bound to the recorded key (SPKI fingerprint)."""
    d = Path(pki_dir) / check_cluster_name(cluster)
    cert = _read_pki_file(d / names.CA_CERT, limits)
    chain = _read_pki_file(d / names.CERT_CHAIN, limits)
    root = _read_pki_file(d / names.ROOT_CERT, limits)
    refuse_out_of_date(d, cluster, pki_dir, chain, now)
    refuse_foreign_roots(Path(pki_dir), cluster, root)
    material = check_ca_material(
        ca_cert_pem=cert,
        ca_key=None,
        ca_key_pem=b"",
        cert_chain_pem=chain,
        root_cert_pem=root,
        at=now,
        source=str(d),
    )
    if held.fingerprint != material.fingerprint or spki_sha256(material.ca_cert.public_key()) != held.key_id:  # type: ignore[arg-type]
        raise Refused(f"{d}: ca-cert.pem is not the certificate the inventory records for the key held elsewhere")
    out = [
        SecretMember(CA_CERT, cert, False),
        SecretMember(CERT_CHAIN, chain, False),
        SecretMember(ROOT_CERT, root, False),
    ]
    crl = d / names.CA_CRL
    if crl.exists():
        crl_pem = _read_pki_file(crl, limits)
        check_bundled_crl(crl_pem, material, source=str(d))
        out.append(SecretMember(CA_CRL, crl_pem, False))
    return out


def _refuse_revoked(pki_dir: Path, cluster: str, cert: Any) -> None:
    """A revoked intermediate never ships (exit 4), whether or not its folder still has the CRL."""
    from airgap.core.x509 import fingerprint
    from airgap.offline.crl import STATE_NAME, read_state

    rev = read_state(pki_dir).is_revoked(fingerprint(cert))
    if rev is not None:
        raise Refused(
            f"{pki_dir / cluster}: the intermediate is revoked: {pki_dir / STATE_NAME} lists serial {rev.serial} "
            f"({rev.reason}, revoked {rev.revoked_at}); run 'airgap ca rotate {cluster} --dir {pki_dir}' "
            "and bundle its replacement"
        )


@dataclass(frozen=True)
class _Include:
    name: str
    path: Path
    size: int


def _check_includes(includes: Sequence[Path], limits: Limits, n_fixed: int) -> list[_Include]:
    out: list[_Include] = []
    seen: set[str] = set()
    for p in includes:
        p = Path(p)
        try:
            st = p.stat()
        except FileNotFoundError as exc:
            raise NotFound(f"{p}: --include file not found") from exc
        except OSError as exc:
            raise InvalidInput(f"{p}: cannot read --include file: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{p}: --include must be a regular file")
        if not INCLUDE_NAME.match(p.name):
            raise InvalidInput(f"{p}: file name not allowed in a bundle (letters, digits, '.', '_', '-'; ≤ 91 chars)")
        if p.name in seen:
            raise InvalidInput(f"{p}: two --include files are named {p.name!r}")
        if st.st_size > min(limits.max_member_size, MAX_USTAR_SIZE):
            raise InvalidInput(f"{p}: {st.st_size} bytes is over the member size limit")
        seen.add(p.name)
        out.append(_Include(p.name, p, st.st_size))
    if len(out) + n_fixed > limits.max_members:
        raise InvalidInput(f"too many members (limit {limits.max_members})")
    return out


def write_bundle(
    out: Path,
    *,
    cluster: str,
    sequence: int,
    bundle_id: str,
    created: dt.datetime,
    expires: dt.datetime,
    sign_key: PrivateKey,
    recipients: Sequence[str],
    secret_members: Sequence[SecretMember],
    includes: Sequence[tuple[str, Path]] = (),
    deterministic: bool = False,
    mode: int = 0o644,
    progress: Progress = NO_PROGRESS,
    ceremony_head: str | None = None,
    format_version: int = FORMAT_VERSION,
    before_publish: Callable[[Manifest], None] | None = None,
    held_key: HeldKey | None = None,
) -> Manifest:
    """Write a bundle file (atomically; never replacing ``out``) from prepared members.

    Used by :func:`seal_bundle` and by the example generator (which needs fixed ids, times and
    RFC 6979 signatures, and format 1 for the legacy example). Include files are streamed: each
    byte is read, hashed and written once. ``before_publish`` runs when the bundle is complete
    under its temporary name; if it raises, nothing is published.
    """
    check_signer_key(sign_key, source="signing key")
    with AtomicFile(out, mode=mode) as fh:
        writer = BundleWriter(fh, progress=progress)
        entries: list[MemberEntry] = [writer.add_bytes(m.path, m.data, encrypted=m.encrypted) for m in secret_members]
        sizes: list[tuple[str, Path, int]] = []
        for name, path in includes:
            try:
                sizes.append((name, path, os.stat(path).st_size))
            except OSError as exc:
                raise InvalidInput(f"{path}: cannot read --include file: {exc.strerror}") from exc
        progress.start(f"sealing {Path(out).name}", sum(s for _, _, s in sizes))
        for name, path, size in sizes:
            try:
                src = open(path, "rb")  # noqa: SIM115
            except OSError as exc:
                raise InvalidInput(f"{path}: cannot read --include file: {exc.strerror}") from exc
            with src:
                entries.append(writer.add_stream(f"include/{name}", src, size, source=str(path)))
        progress.finish()
        manifest = Manifest(
            format_version=format_version,
            bundle_id=bundle_id,
            cluster=cluster,
            sequence=sequence,
            created=format_time(created),
            expires=format_time(expires),
            signer=spki_sha256(sign_key),
            recipients=tuple(recipients),
            members=tuple(entries),
            ceremony_head=ceremony_head,
            held_key=held_key,
        )
        data = manifest.canonical_bytes()
        writer.finish(data, sign_manifest(sign_key, data, deterministic=deterministic))
        if before_publish is not None:
            before_publish(manifest)
    return manifest


def _bundle_officer(pki: Path, sign_key: PrivateKey, officer: Officer | None) -> tuple[Officer | None, bool]:
    """(the officer who records this act, whether it defaulted to the signing key).

    An explicit ``officer`` (``--log-key``) wins. Otherwise, on a PKI that keeps a log, the
    signing key is tried as the officer's log key (the usual setup: one officer key for both);
    :func:`ceremony.prepare` then checks that it really is the registered one.
    """
    if officer is not None:
        return officer, False
    if ceremony.has_log(pki):
        return Officer.from_key(sign_key), True
    return None, False


def _defaulted_refusal(pki: Path, officer: Officer | None) -> str:
    """The refusal when the signing key, tried as the officer's log key, is not the registered one."""
    assert officer is not None
    return (
        f"{ceremony.log_path(pki)}: this PKI keeps a ceremony log and the signing key {officer.key_id} is not "
        f"its officer key; give the officer's log key (--log-key KEY or ${ceremony.ENV_LOG_KEY}) so this "
        "bundle is recorded"
    )


def _bundle_params(manifest: Manifest, *, bundle_id: str, head: str | None) -> dict[str, object]:
    """The ``bundle`` log entry of a sealed manifest (recorded before the bundle is published)."""
    return {
        "cluster": manifest.cluster,
        "bundle_id": bundle_id,
        "sequence": manifest.sequence,
        "signer_key_id": manifest.signer,
        "ceremony_head": head,
        "expires": manifest.expires,
        "manifest_sha256": hashlib.sha256(manifest.canonical_bytes()).hexdigest(),
    }


def _check_options(
    cluster: str,
    out: Path,
    held: IntermediateRecord | None,
    recipients: Sequence[str],
    *,
    no_encrypt: bool,
    expires_days: int,
) -> list[str]:
    """``bundle create``'s options, checked before anything is read or written: the recipients, unique."""
    if out.exists() or out.is_symlink():
        raise WouldOverwrite(f"{out}: already exists; refusing to overwrite")
    if held is not None and recipients:
        raise InvalidInput(
            f"cluster {cluster}'s CA key is held elsewhere (ca sign): its bundle carries no key; give no --recipient"
        )
    if no_encrypt and recipients:
        raise InvalidInput("--no-encrypt and --recipient cannot be used together")
    if held is None and not no_encrypt and not recipients:
        raise Refused(
            "refusing to write the CA private key in plaintext: give --recipient PUB (or --no-encrypt explicitly)"
        )
    recips = list(dict.fromkeys(recipients))
    for r in recips:
        age.parse_recipient(r, source="--recipient")
    if not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise InvalidInput(f"--expires must be between 1 and {MAX_EXPIRY_DAYS} days")
    return recips


def seal_bundle(
    cluster: str,
    *,
    pki_dir: Path,
    sign_key_path: Path,
    sign_passphrase: bytes | None,
    pki_passphrase: bytes | None,
    recipients: Sequence[str],
    includes: Sequence[Path] = (),
    expires_days: int = DEFAULT_EXPIRY_DAYS,
    no_encrypt: bool = False,
    out: Path,
    officer: Officer | None = None,
    limits: Limits = DEFAULT_LIMITS,
    now: dt.datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> SealedBundle:
    """``bundle create``: every check first, then reserve a sequence number and write the bundle.

    Refuses (exit 4) to write a private key in plaintext unless ``no_encrypt``, to overwrite
    ``out``, or to seal a cluster the PKI has no CA for. ``recipients`` are ``age1…`` strings.

    Ceremony log: ``officer`` is the officer's log key (``--log-key``). When it is None and the PKI
    keeps a log, the signing key is used if it is the registered officer key; otherwise the act is
    refused (exit 4) before a sequence number is reserved or a byte written. A log that no longer
    verifies is exit 1, also before anything changes. With a log, the manifest carries its head
    (``ceremony_head``) and a ``bundle`` entry is appended before the bundle is published. An
    explicit ``officer`` on a PKI without a log starts the log (``ceremony_head`` is then null:
    there was no log when the bundle was sealed).
    """
    cluster = check_cluster_name(cluster)
    out = Path(out)
    held = held_elsewhere(Path(pki_dir), cluster)
    recips = _check_options(cluster, out, held, recipients, no_encrypt=no_encrypt, expires_days=expires_days)
    from airgap.offline.ca import CAStore  # the PKI folder facade: only this act needs it

    store = CAStore(Path(pki_dir))
    store.load_root_cert()  # a PKI folder, not any folder
    sign_key = load_private_key(Path(sign_key_path), sign_passphrase)
    check_signer_key(sign_key, source=str(sign_key_path))
    t = (now or clock.now()).replace(microsecond=0)  # airgap's one clock (tests and faketime move it)
    if held is not None:
        secret = keyless_members(store.path, cluster, held, limits=limits, now=t)
    else:
        secret = cacerts_members(
            store.path, cluster, pki_passphrase=pki_passphrase, recipients=recips, encrypt=not no_encrypt,
            limits=limits, now=t,
        )  # fmt: skip
    incs = _check_includes(includes, limits, len(secret))
    bundle_id = secrets.token_hex(16)
    logged: list[int] = []
    who, defaulted = _bundle_officer(store.path, sign_key, officer)
    refusal = _defaulted_refusal(store.path, who) if defaulted else None
    # The act: the log is checked (a refused or broken log stops it before anything changes).
    with pki_act(store.path, "bundle", who, refused_officer=refusal) as act:
        head = act.head()
        seq = _reserve_sequence(store.path, cluster, bundle_id, format_time(t))

        def record(manifest: Manifest) -> None:
            entry = act.record("bundle", _bundle_params(manifest, bundle_id=bundle_id, head=head), at=now)
            if entry is not None:
                logged.append(entry.seq)

        manifest = write_bundle(
            out,
            cluster=cluster,
            sequence=seq,
            bundle_id=bundle_id,
            created=t,
            expires=t + dt.timedelta(days=expires_days),
            sign_key=sign_key,
            recipients=recips,
            secret_members=secret,
            includes=[(i.name, i.path) for i in incs],
            mode=0o600 if no_encrypt else 0o644,
            progress=progress,
            ceremony_head=head,
            before_publish=record,
            format_version=KEYLESS_FORMAT_VERSION if held is not None else FORMAT_VERSION,
            held_key=HeldKey(held.key_id or "", held.request_id) if held is not None else None,
        )
    return SealedBundle(out, manifest, logged[0] if logged else None)


__all__ = [
    "DEFAULT_EXPIRY_DAYS",
    "SealedBundle",
    "SecretMember",
    "cacerts_members",
    "cluster_key_is_encrypted",
    "held_elsewhere",
    "keyless_members",
    "last_sequence",
    "seal_bundle",
    "sign_key_is_encrypted",
    "write_bundle",
]
