#!/usr/bin/env python3
"""Deterministic generator of the example bundles in ``bundles/examples/``.

    python bundles/generate_examples.py            # (re)write bundles/examples/*.bundle and README.md
    python bundles/generate_examples.py --check    # regenerate into a temp folder and compare bytes
    python bundles/generate_examples.py --init-keys  # once: make the fixed inputs under examples/keys/

Inputs are committed under ``bundles/examples/keys/``: TEST-ONLY keys (unencrypted, published in
this repository: never trust them for anything real), a small PKI with clusters c1 and c2, and
the age ciphertexts of the CA keys (age encryption is randomised, so it is made once and reused).
Everything else is fixed: ids, times, sequence numbers, tar headers, and RFC 6979 (deterministic)
ECDSA signatures, so every run writes the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core import age
from airgap.core.bundle import (
    BLOCK,
    CA_CERT,
    CA_KEY_AGE,
    CERT_CHAIN,
    MANIFEST_NAME,
    ROOT_CERT,
    SIGNATURE_NAME,
    canonical_json,
    padding_for,
    sign_manifest,
    ustar_header,
)
from airgap.core.keys import encode_private_key, load_private_key, public_pem, spki_sha256
from airgap.core.x509 import build_intermediate, build_root, cert_pem
from airgap.offline.bundle import SecretMember, write_bundle

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
KEYS = EXAMPLES / "keys"
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2035, 12, 1, tzinfo=dt.UTC)
# A time at which every valid example verifies (tests pass it as ``now``).
CHECK_TIME = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
NOTES = b"Example include: a release tarball would go here.\n"
# The example PKI keeps no ceremony log: valid.bundle carries this fixed stand-in head so the
# field is exercised with a value (a real bundle carries the SHA-256 of the log's last entry).
EXAMPLE_HEAD = hashlib.sha256(b"airgap example ceremony head").hexdigest()


@dataclass(frozen=True)
class Example:
    """One example: file name, what is wrong with it, and the outcome the tests expect.

    ``verify`` is the exit code of ``bundle verify --trust officer.pub``; ``imports`` that of
    ``bundle import --cluster c1 --identity operator.key`` after ``valid.bundle`` was imported.
    """

    name: str
    wrong: str
    verify: int
    imports: int


CATALOGUE = [
    Example(
        "valid.bundle",
        "nothing: a valid format 2 bundle for cluster c1, sequence 2, signed by officer, encrypted to operator, "
        "with a ceremony_head",
        0,
        0,
    ),
    Example(
        "legacy-v1.bundle",
        "nothing: a valid format 1 bundle (made before ceremony_head existed), sequence 4; still accepted",
        0,
        0,
    ),
    Example("tampered-member.bundle", "one byte of cacerts/cert-chain.pem changed after signing (hash mismatch)", 1, 1),
    Example(
        "tampered-manifest.bundle", "manifest.json edited (cluster c1 -> c2) without re-signing (bad signature)", 1, 1
    ),
    Example(
        "missing-member.bundle", "cacerts/root-cert.pem removed from the archive (named in the manifest, missing)", 1, 1
    ),
    Example("extra-member.bundle", "an extra member include/evil.sh that the manifest does not name", 1, 1),
    Example("duplicate-member.bundle", "cacerts/ca-cert.pem appears twice in the archive", 3, 3),
    Example("path-traversal.bundle", "a member named ../../etc/cron.d/evil (escapes with '..')", 3, 3),
    Example("absolute-path.bundle", "a member named /etc/cron.d/evil (absolute path)", 3, 3),
    Example("symlink.bundle", "a symbolic-link member include/shadow -> /etc/shadow", 3, 3),
    Example("hardlink.bundle", "a hard-link member include/copy -> cacerts/ca-cert.pem", 3, 3),
    Example("truncated.bundle", "valid.bundle cut in half", 3, 3),
    Example("empty.bundle", "an empty file", 3, 3),
    Example("unsigned.bundle", "no manifest.json.sig member", 1, 1),
    Example("untrusted-signer.bundle", "correctly signed, but by stranger.key, which is not trusted", 1, 1),
    Example("forged-signer-id.bundle", "signed by stranger.key while the manifest claims officer's key id", 1, 1),
    Example(
        "tampered-ceremony-head.bundle",
        "ceremony_head in manifest.json edited without re-signing (bad signature)",
        1,
        1,
    ),
    Example(
        "missing-ceremony-head.bundle",
        "signed format 2 manifest without ceremony_head (required; null when the PKI keeps no log)",
        3,
        3,
    ),
    Example(
        "v1-with-ceremony-head.bundle",
        "signed format 1 manifest carrying ceremony_head (a field format 1 does not have)",
        3,
        3,
    ),
    Example(
        "bad-ceremony-head.bundle", "signed manifest whose ceremony_head is uppercase hex (one spelling only)", 3, 3
    ),
    Example("unknown-field.bundle", "signed manifest with an unknown field 'comment' (schema rejects it)", 3, 3),
    Example("non-canonical.bundle", "signed manifest that is not in canonical form (indented JSON)", 3, 3),
    Example("expired.bundle", "signed, but expired on 2025-01-31", 4, 4),
    Example("other-cluster.bundle", "valid, but made for cluster c2 (import --cluster c1 is refused)", 0, 4),
    Example("replayed-older.bundle", "valid, but sequence 1: older than valid.bundle's 2 (rollback)", 0, 4),
    Example("wrong-recipient.bundle", "valid, but ca-key.pem is encrypted to outsider, not operator", 0, 3),
]


# -- fixed inputs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestExample:
    """One example request file and the exit code of ``ca sign FILE --trust keys/officer.pub`` (at CHECK_TIME)."""

    name: str
    wrong: str
    signs: int


# Request files (bundles/SPEC.md section 9). The requester is officer.key here only to reuse a
# committed TEST-ONLY signing key; in use it is the jump-host operator's key.
REQUEST_CATALOGUE = [
    RequestExample("valid.request", "nothing: a valid request for cluster c3 (EC P-256 key), signed by officer", 0),
    RequestExample("tampered-csr.request", "one byte of request/csr.pem changed after signing (hash mismatch)", 1),
    RequestExample("tampered-manifest.request", "manifest.json edited (cluster c3 -> c4) without re-signing", 1),
    RequestExample("untrusted-signer.request", "correctly signed, but by stranger.key, which is not trusted", 1),
    RequestExample("wrong-key-id.request", "signed manifest naming another key_id than the CSR's key", 1),
    RequestExample("bad-csr-signature.request", "signed, but the CSR's own signature does not verify", 1),
    RequestExample("weak-key.request", "signed, but the CSR's key is EC P-521 (not allowed)", 3),
    RequestExample("extra-member.request", "an extra member include/evil.sh the manifest does not name", 3),
    RequestExample("path-traversal.request", "the CSR member named ../csr.pem (escapes with '..')", 3),
    RequestExample("bundle-kind.request", "a signed manifest without kind 'airgap-ca-request' (a bundle's)", 3),
    RequestExample("unknown-field.request", "signed manifest with an unknown field 'comment'", 3),
    RequestExample("expired.request", "signed, but expired on 2025-01-31", 4),
]
REQUEST_CREATED = CREATED
REQUEST_ID = hashlib.sha256(b"airgap example request").hexdigest()[:32]


def init_keys() -> None:
    """Make the committed inputs once (random keys); refuses to touch existing files."""
    KEYS.mkdir(parents=True, exist_ok=True)
    signers = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("officer", "stranger")}
    for n, k in signers.items():
        _new(KEYS / f"{n}.key", encode_private_key(k, None))
        _new(KEYS / f"{n}.pub", public_pem(k))
    for n in ("operator", "outsider"):
        age.new_recipient_key(n, KEYS, None)
    pki = KEYS / "pki"
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = build_root(root_key, org="Istio", cn="Example Root CA (TEST ONLY)", days=7300, not_before=CREATED)
    _new(pki / "root-cert.pem", cert_pem(root))
    _new(pki / "root-key.pem", encode_private_key(root_key, None))
    for cluster in ("c1", "c2"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_intermediate(
            key.public_key(),
            cluster=cluster,
            root_cert=root,
            root_key=root_key,
            org="Istio",
            cn="Intermediate CA",
            days=3650,
            sans=["DNS:istiod.istio-system.svc"],
            not_before=CREATED,
        )
        key_pem = encode_private_key(key, None)
        _new(pki / cluster / "ca-cert.pem", cert_pem(cert))
        _new(pki / cluster / "ca-key.pem", key_pem)
        _new(pki / cluster / "cert-chain.pem", cert_pem(cert) + cert_pem(root))
        _new(pki / cluster / "root-cert.pem", cert_pem(root))
        for who in ("operator", "outsider"):
            recipient = (KEYS / f"{who}.pub").read_text().strip()
            _new(KEYS / f"{cluster}-ca-key.pem.{who}.age", age.encrypt(key_pem, [recipient]))


def _new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise SystemExit(f"{path}: exists; the committed inputs are never regenerated")
    path.write_bytes(data)
    if path.suffix == ".key" or path.name.endswith("-key.pem"):
        path.chmod(0o600)


# -- building ----------------------------------------------------------------------------------------
def _bundle_id(name: str) -> str:
    return hashlib.sha256(b"airgap example " + name.encode()).hexdigest()[:32]


def _recipient(who: str) -> str:
    return (KEYS / f"{who}.pub").read_text().strip()


def _members(cluster: str, who: str) -> list[SecretMember]:
    d = KEYS / "pki" / cluster
    return [
        SecretMember(CA_CERT, (d / "ca-cert.pem").read_bytes(), False),
        SecretMember(CA_KEY_AGE, (KEYS / f"{cluster}-ca-key.pem.{who}.age").read_bytes(), True),
        SecretMember(CERT_CHAIN, (d / "cert-chain.pem").read_bytes(), False),
        SecretMember(ROOT_CERT, (d / "root-cert.pem").read_bytes(), False),
    ]


def _seal(
    out: Path,
    *,
    cluster: str = "c1",
    sequence: int = 2,
    who: str = "operator",
    signer: str = "officer",
    created: dt.datetime = CREATED,
    expires: dt.datetime = EXPIRES,
    notes: Path | None = None,
    format_version: int = 2,
) -> None:
    write_bundle(
        out,
        cluster=cluster,
        sequence=sequence,
        bundle_id=_bundle_id(out.name),
        created=created,
        expires=expires,
        sign_key=load_private_key(KEYS / f"{signer}.key", None),
        recipients=[_recipient(who)],
        secret_members=_members(cluster, who),
        includes=[("notes.txt", notes)] if notes else [],
        deterministic=True,
        format_version=format_version,
        ceremony_head=EXAMPLE_HEAD if format_version >= 2 else None,
    )


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes
    typeflag: bytes = b"0"
    linkname: str = ""


def _read(path: Path) -> list[Entry]:
    from airgap.core.bundle import scan_archive
    from airgap.core.limits import DEFAULT_LIMITS

    with open(path, "rb") as fh:
        found = scan_archive(fh, path.stat().st_size, limits=DEFAULT_LIMITS, source=str(path))
        out = []
        for e in found:
            fh.seek(e.offset)
            out.append(Entry(e.name, fh.read(e.size)))
    return out


def _header(e: Entry) -> bytes:
    if e.name.startswith("/") or ".." in e.name.split("/"):
        h = bytearray(ustar_header("x", len(e.data), typeflag=e.typeflag, linkname=e.linkname))
        h[0:100] = e.name.encode().ljust(100, b"\0")
        h[148:156] = b" " * 8
        h[148:156] = format(sum(h), "o").zfill(6).encode() + b"\0 "
        return bytes(h)
    return ustar_header(e.name, len(e.data), typeflag=e.typeflag, linkname=e.linkname)


def _write(path: Path, entries: list[Entry]) -> None:
    with open(path, "wb") as fh:
        for e in entries:
            fh.write(_header(e) + e.data + padding_for(len(e.data)))
        fh.write(b"\0" * (2 * BLOCK))


def _resign(
    src: Path,
    dst: Path,
    *,
    members: Callable[[list[Entry]], list[Entry]] = lambda es: es,
    manifest: Callable[[dict[str, object]], dict[str, object]] = lambda d: d,
    signer: str = "officer",
    encode: Callable[[dict[str, object]], bytes] = canonical_json,
) -> None:
    entries = _read(src)
    key = load_private_key(KEYS / f"{signer}.key", None)
    doc = json.loads(entries[-2].data)
    doc["signer"] = spki_sha256(key)
    data = encode(manifest(doc))
    sig = sign_manifest(key, data, deterministic=True)
    _write(dst, [*members(entries[:-2]), Entry(MANIFEST_NAME, data), Entry(SIGNATURE_NAME, sig)])


def _example_key(label: str, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    """A fixed TEST-ONLY key derived from ``label`` (so the example CSRs need no committed key)."""
    order = {"secp256r1": 2**256 - 2**224, "secp521r1": 2**520}[curve.name]
    scalar = int.from_bytes(hashlib.sha512(b"airgap example key " + label.encode()).digest(), "big") % order + 1
    return ec.derive_private_key(scalar, curve)


def _example_csr(key: ec.EllipticCurvePrivateKey, cluster: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.LOCALITY_NAME, cluster)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name)
    return csr.sign(key, hashes.SHA256(), ecdsa_deterministic=True).public_bytes(serialization.Encoding.PEM)


def _request(out: Path, *, signer: str = "officer", created: dt.datetime = REQUEST_CREATED, days: int = 365) -> None:
    from airgap.core.request_file import write_request

    csr = _example_csr(_example_key("c3", ec.SECP256R1()), "c3")
    key = load_private_key(KEYS / f"{signer}.key", None)
    data = write_request(
        csr, cluster="c3", sign_key=key, created=created, days=days, request_id=REQUEST_ID, deterministic=True
    )
    out.write_bytes(data)


def _resign_request(
    src: Path,
    dst: Path,
    *,
    members: Callable[[list[Entry]], list[Entry]] = lambda es: es,
    manifest: Callable[[dict[str, object]], dict[str, object]] = lambda d: d,
) -> None:
    """``src`` with its members and manifest changed, the member hashes recomputed, signed by officer."""
    entries = _read(src)
    key = load_private_key(KEYS / "officer.key", None)
    payload = members(entries[:-2])
    doc = json.loads(entries[-2].data)
    doc["members"] = [
        {"path": e.name, "size": len(e.data), "sha256": hashlib.sha256(e.data).hexdigest(), "encrypted": False}
        for e in payload
        if e.name == "request/csr.pem"
    ]
    data = canonical_json(manifest(doc))
    _write(
        dst, [*payload, Entry(MANIFEST_NAME, data), Entry(SIGNATURE_NAME, sign_manifest(key, data, deterministic=True))]
    )


def generate_requests(out: Path) -> None:
    """Every example request file (valid, then one per attack)."""
    from cryptography.hazmat.primitives import serialization

    valid = out / "valid.request"
    _request(valid)
    entries = _read(valid)
    csr_entry, man = entries[0], entries[-2]
    flipped = bytearray(csr_entry.data)
    flipped[len(flipped) // 2] ^= 1
    _write(out / "tampered-csr.request", [Entry(csr_entry.name, bytes(flipped)), *entries[1:]])
    edited = Entry(MANIFEST_NAME, man.data.replace(b'"cluster":"c3"', b'"cluster":"c4"'))
    _write(out / "tampered-manifest.request", [*entries[:-2], edited, entries[-1]])
    _request(out / "untrusted-signer.request", signer="stranger")
    other = spki_sha256(_example_key("other", ec.SECP256R1()))
    _resign_request(valid, out / "wrong-key-id.request", manifest=lambda d: {**d, "key_id": other})
    # the CSR's own signature broken: a byte of the DER signature flipped, PEM re-encoded
    from cryptography import x509

    der = bytearray(x509.load_pem_x509_csr(csr_entry.data).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 1
    import base64

    b64 = base64.encodebytes(bytes(der)).replace(b"\n", b"")
    bad_pem = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        + b"\n-----END CERTIFICATE REQUEST-----\n"
    )
    _resign_request(valid, out / "bad-csr-signature.request", members=lambda es: [Entry(es[0].name, bad_pem)])
    weak = _example_key("weak", ec.SECP521R1())
    weak_pem = _example_csr(weak, "c3")
    _resign_request(
        valid,
        out / "weak-key.request",
        members=lambda es: [Entry(es[0].name, weak_pem)],
        manifest=lambda d: {**d, "key_id": spki_sha256(weak)},
    )
    _resign_request(valid, out / "extra-member.request", members=lambda es: [*es, Entry("include/evil.sh", b"x\n")])
    _resign_request(valid, out / "path-traversal.request", members=lambda es: [Entry("../csr.pem", es[0].data)])
    _resign_request(valid, out / "bundle-kind.request", manifest=lambda d: {k: v for k, v in d.items() if k != "kind"})
    _resign_request(valid, out / "unknown-field.request", manifest=lambda d: {**d, "comment": "trust me"})
    _request(out / "expired.request", created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), days=30)


def generate(out: Path) -> None:
    """Write every example and the README into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    notes = out / ".notes.txt"
    notes.write_bytes(NOTES)
    valid = out / "valid.bundle"
    _seal(valid, notes=notes)
    entries = _read(valid)

    def flip(es: list[Entry], name: str) -> list[Entry]:
        return [Entry(e.name, e.data[:-2] + bytes([e.data[-2] ^ 1]) + e.data[-1:]) if e.name == name else e for e in es]

    _write(out / "tampered-member.bundle", flip(entries, CERT_CHAIN))
    man = entries[-2]
    edited = Entry(MANIFEST_NAME, man.data.replace(b'"cluster":"c1"', b'"cluster":"c2"'))
    _write(out / "tampered-manifest.bundle", [*entries[:-2], edited, entries[-1]])
    _resign(valid, out / "missing-member.bundle", members=lambda es: [e for e in es if e.name != ROOT_CERT])
    _resign(valid, out / "extra-member.bundle", members=lambda es: [*es, Entry("include/evil.sh", b"echo pwned\n")])
    _resign(valid, out / "duplicate-member.bundle", members=lambda es: [es[0], *es])
    _resign(valid, out / "path-traversal.bundle", members=lambda es: [*es, Entry("../../etc/cron.d/evil", b"x\n")])
    _resign(valid, out / "absolute-path.bundle", members=lambda es: [*es, Entry("/etc/cron.d/evil", b"x\n")])
    _resign(
        valid,
        out / "symlink.bundle",
        members=lambda es: [*es, Entry("include/shadow", b"", typeflag=b"2", linkname="/etc/shadow")],
    )
    _resign(
        valid,
        out / "hardlink.bundle",
        members=lambda es: [*es, Entry("include/copy", b"", typeflag=b"1", linkname=CA_CERT)],
    )
    data = valid.read_bytes()
    (out / "truncated.bundle").write_bytes(data[: len(data) // 2])
    (out / "empty.bundle").write_bytes(b"")
    _write(out / "unsigned.bundle", entries[:-1])
    _resign(valid, out / "untrusted-signer.bundle", signer="stranger")
    officer_id = spki_sha256(load_private_key(KEYS / "officer.key", None))
    _resign(valid, out / "forged-signer-id.bundle", signer="stranger", manifest=lambda d: {**d, "signer": officer_id})
    edited_head = man.data.replace(EXAMPLE_HEAD.encode(), hashlib.sha256(b"another head").hexdigest().encode())
    assert edited_head != man.data
    _write(out / "tampered-ceremony-head.bundle", [*entries[:-2], Entry(MANIFEST_NAME, edited_head), entries[-1]])
    _resign(
        valid,
        out / "missing-ceremony-head.bundle",
        manifest=lambda d: {k: v for k, v in d.items() if k != "ceremony_head"},
    )
    _resign(valid, out / "bad-ceremony-head.bundle", manifest=lambda d: {**d, "ceremony_head": EXAMPLE_HEAD.upper()})
    _seal(out / "legacy-v1.bundle", sequence=4, format_version=1)
    _resign(
        out / "legacy-v1.bundle",
        out / "v1-with-ceremony-head.bundle",
        manifest=lambda d: {**d, "ceremony_head": EXAMPLE_HEAD},
    )
    _resign(valid, out / "unknown-field.bundle", manifest=lambda d: {**d, "comment": "trust me"})
    _resign(
        valid,
        out / "non-canonical.bundle",
        encode=lambda d: json.dumps(d, indent=2, sort_keys=True).encode(),
    )
    _seal(
        out / "expired.bundle",
        created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        expires=dt.datetime(2025, 1, 31, tzinfo=dt.UTC),
    )
    _seal(out / "other-cluster.bundle", cluster="c2", sequence=5)
    _seal(out / "replayed-older.bundle", sequence=1)
    _seal(out / "wrong-recipient.bundle", sequence=3, who="outsider")
    notes.unlink()
    generate_requests(out)
    lines = [
        "# Example bundles (generated by `bundles/generate_examples.py`; do not edit)",
        "",
        "Trust `keys/officer.pub`; import with `keys/operator.key` into cluster `c1`. Keys under `keys/`",
        "are TEST-ONLY, unencrypted and public: never trust them for anything real.",
        "Expected exit codes: verify = `bundle verify --trust keys/officer.pub`; import = `bundle import",
        "--cluster c1 --identity keys/operator.key` after `valid.bundle` was imported.",
        "",
        "| file | what is wrong with it | verify | import |",
        "| --- | --- | --- | --- |",
        *(f"| `{e.name}` | {e.wrong} | {e.verify} | {e.imports} |" for e in CATALOGUE),
        "",
        "## Request files (`*.request`, SPEC.md section 9)",
        "",
        "Expected exit code: sign = `ca sign FILE --trust keys/officer.pub --dir PKI --out DIR` at 2026-06-01",
        "(officer.key stands in for the jump-host operator's signing key).",
        "",
        "| file | what is wrong with it | sign |",
        "| --- | --- | --- |",
        *(f"| `{e.name}` | {e.wrong} | {e.signs} |" for e in REQUEST_CATALOGUE),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def check() -> int:
    """Regenerate into a temp folder; exit 1 when any committed example differs."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        names = sorted(p.name for p in Path(tmp).iterdir())
        committed = sorted(p.name for p in EXAMPLES.iterdir() if p.is_file())
        bad = [n for n in names if not (EXAMPLES / n).exists() or not filecmp.cmp(Path(tmp) / n, EXAMPLES / n, False)]
        bad += [n for n in committed if n not in names]
    if bad:
        print(f"examples differ from the generator: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"{len(names)} example files match the generator")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--init-keys", action="store_true", help="make the fixed inputs (once)")
    args = ap.parse_args(argv)
    if args.init_keys:
        init_keys()
        return 0
    if args.check:
        return check()
    # Build everything in a temp folder, then replace the committed examples (old ones removed).
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for old in [*EXAMPLES.glob("*.bundle"), *EXAMPLES.glob("*.request")]:
            old.unlink()
        for made in sorted(Path(tmp).iterdir()):
            shutil.copyfile(made, EXAMPLES / made.name)
    print(f"wrote {len(CATALOGUE)} example bundles and {len(REQUEST_CATALOGUE)} request files to {EXAMPLES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
