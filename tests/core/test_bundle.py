"""The bundle format and open_bundle: every attack class fails with the right error family.

Exit codes per the contract: malformed / unsafe archive or manifest → InvalidInput (3); bad or
untrusted signature, hash mismatch, missing or extra member → VerificationError (1); expired →
Refused (4).
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import datetime as dt
import io
import json
import random
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airgap.core.bundle import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    VerifiedBundle,
    canonical_json,
    inspect_bundle,
    open_bundle,
    parse_manifest_json,
    validate_manifest,
)
from airgap.core.keys import load_public_key
from airgap.core.limits import Limits
from airgap.errors import AirgapError, InvalidInput, Refused, VerificationError
from tests.bundle_fixtures import (  # noqa: F401
    NOW,
    Keys,
    RawEntry,
    _logged_pki_template,
    bkeys,
    logged_pki,
    make_bundle,
    manifest_doc,
    read_entries,
    resign,
    seal,
    trust_of,
    write_entries,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, bkeys: Keys, _pki_template: Path) -> Path:
    """One valid c1 bundle with a small include, shared read-only by this module."""
    tmp = tmp_path_factory.mktemp("core-bundle")
    inc = tmp / "notes.txt"
    inc.write_bytes(b"release notes\n" * 100)
    import shutil

    pki = tmp / "pki"
    shutil.copytree(_pki_template, pki)
    bundle, *_ = make_bundle(pki, tmp, keys=bkeys, includes=(inc,))
    return bundle


def _open(path: Path, keys: Keys, **kw: Any) -> VerifiedBundle:
    return open_bundle(path, trust_of(keys), now=kw.pop("now", NOW), **kw)


def test_valid_bundle_verifies(base: Path, bkeys: Keys) -> None:
    vb = _open(base, bkeys)
    assert vb.cluster == "c1"
    assert vb.sequence == 1
    assert [m.path for m in vb.manifest.members] == [
        "cacerts/ca-cert.pem",
        "cacerts/ca-key.pem.age",
        "cacerts/cert-chain.pem",
        "cacerts/root-cert.pem",
        "include/notes.txt",
    ]
    assert vb.member_bytes("include/notes.txt") == b"release notes\n" * 100
    assert vb.member_bytes("cacerts/ca-key.pem.age").startswith(b"age-encryption.org/v1\n")
    assert vb.manifest.recipients == (bkeys.recipient,)


def test_verified_bundle_only_from_open_bundle(base: Path, bkeys: Keys) -> None:
    vb = _open(base, bkeys)
    with pytest.raises(TypeError):
        VerifiedBundle(vb.path, vb.manifest, vb.manifest_bytes, vb.signature, vb.signer_key_id, {}, {})


def test_manifest_bytes_are_canonical(base: Path, bkeys: Keys) -> None:
    vb = _open(base, bkeys)
    assert vb.manifest_bytes == canonical_json(json.loads(vb.manifest_bytes))
    assert vb.manifest.canonical_bytes() == vb.manifest_bytes


def test_extract_member_rechecks_hash(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    vb = _open(base, bkeys)
    vb.extract_member("include/notes.txt", tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_bytes() == b"release notes\n" * 100


# -- byte flips across the whole file --------------------------------------------------------------
def test_byte_flips_anywhere_fail(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    data = base.read_bytes()
    rng = random.Random(1234)
    positions = sorted({*range(0, len(data), max(1, len(data) // 97)), *rng.sample(range(len(data)), 60)})
    positions += [len(data) - 1, len(data) - 512, len(data) - 1025]
    target = tmp_path / "flipped.bundle"
    for pos in positions:
        mutated = bytearray(data)
        mutated[pos] ^= 0x01 << (pos % 8)
        target.write_bytes(mutated)
        with pytest.raises(AirgapError) as info:
            _open(target, bkeys)
            pytest.fail(f"a flip at byte {pos} ({pos % 512} in its block) verified")
        assert info.value.exit_code in (1, 3), (pos, info.value.message)


# -- each member dropped / changed / duplicated; extra members ----------------------------------------
def test_each_member_dropped(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    names = [e.name for e in read_entries(base)[:-2]]
    for name in names:
        out = resign(
            base, tmp_path / "d.bundle", bkeys.signer, members=lambda es, n=name: [e for e in es if e.name != n]
        )
        with pytest.raises(VerificationError, match="missing"):
            _open(out, bkeys)


def test_each_member_changed(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    names = [e.name for e in read_entries(base)[:-2]]
    for name in names:

        def change(es: list[RawEntry], n: str = name) -> list[RawEntry]:
            return [RawEntry(e.name, e.data[:-1] + bytes([e.data[-1] ^ 1])) if e.name == n else e for e in es]

        out = resign(base, tmp_path / "c.bundle", bkeys.signer, members=change)
        with pytest.raises(VerificationError, match="SHA-256"):
            _open(out, bkeys)


def test_member_changed_to_other_length(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    def grow(es: list[RawEntry]) -> list[RawEntry]:
        return [RawEntry(e.name, e.data + b"x") if e.name == "cacerts/ca-cert.pem" else e for e in es]

    out = resign(base, tmp_path / "g.bundle", bkeys.signer, members=grow)
    with pytest.raises(VerificationError, match="bytes, the manifest says"):
        _open(out, bkeys)


def test_each_member_duplicated(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    entries = read_entries(base)
    for i in range(len(entries)):
        dup = [*entries[: i + 1], entries[i], *entries[i + 1 :]]
        out = write_entries(tmp_path / "dup.bundle", dup)
        with pytest.raises(InvalidInput, match="appears twice"):
            _open(out, bkeys)


def test_extra_member(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    out = resign(
        base, tmp_path / "x.bundle", bkeys.signer, members=lambda es: [*es, RawEntry("include/evil.sh", b"rm -rf /")]
    )
    with pytest.raises(VerificationError, match="not in the manifest"):
        _open(out, bkeys)


def test_members_reordered(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    out = resign(base, tmp_path / "r.bundle", bkeys.signer, members=lambda es: list(reversed(es)))
    with pytest.raises(VerificationError, match="order"):
        _open(out, bkeys)


# -- unsafe names and types ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (RawEntry("../evil.pem", b"x"), "escapes the bundle"),
        (RawEntry("cacerts/../../evil.pem", b"x"), "escapes the bundle"),
        (RawEntry("/etc/passwd", b"x"), "absolute path"),
        (RawEntry("cacerts//ca-cert.pem", b"x"), "name the bundle format does not allow"),
        (RawEntry("./cacerts/ca-cert.pem", b"x"), "name the bundle format does not allow"),
        (RawEntry("include/a b", b"x"), "name the bundle format does not allow"),
        (RawEntry("include/link", b"", typeflag=b"2", linkname="/etc/shadow"), "symbolic link"),
        (RawEntry("include/hard", b"", typeflag=b"1", linkname="cacerts/ca-cert.pem"), "hard link"),
        (RawEntry("include/dir", b"", typeflag=b"5"), "directory"),
        (RawEntry("include/dev", b"", typeflag=b"3"), "character device"),
        (RawEntry("include/fifo", b"", typeflag=b"6"), "FIFO"),
        (RawEntry("././@PaxHeader", b"", typeflag=b"x"), "pax"),
    ],
)
def test_unsafe_entries_rejected(base: Path, bkeys: Keys, tmp_path: Path, entry: RawEntry, message: str) -> None:
    # the entry is also listed in a re-signed manifest where the schema allows it, so only the
    # archive checks can stop it
    out = resign(base, tmp_path / "u.bundle", bkeys.signer, members=lambda es: [entry, *es])
    with pytest.raises(InvalidInput, match=message):
        _open(out, bkeys)


def test_symlink_named_like_a_member_rejected(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    def swap(es: list[RawEntry]) -> list[RawEntry]:
        return [
            RawEntry(e.name, b"", typeflag=b"2", linkname="/etc/passwd") if e.name == "cacerts/root-cert.pem" else e
            for e in es
        ]

    out = resign(base, tmp_path / "s.bundle", bkeys.signer, members=swap)
    with pytest.raises(InvalidInput, match="symbolic link"):
        _open(out, bkeys)


# -- truncated and empty files ---------------------------------------------------------------------------
def test_truncated_files(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    data = base.read_bytes()
    target = tmp_path / "t.bundle"
    for n in sorted({1, 100, 511, 512, 513, 1024, len(data) // 3, len(data) // 2, len(data) - 1024, len(data) - 1}):
        target.write_bytes(data[:n])
        with pytest.raises(AirgapError) as info:
            _open(target, bkeys)
        assert info.value.exit_code in (1, 3), n


def test_empty_file(bkeys: Keys, tmp_path: Path) -> None:
    p = tmp_path / "empty.bundle"
    p.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty file"):
        _open(p, bkeys)
    p.write_bytes(b"\0" * 1024)
    with pytest.raises(InvalidInput, match="empty archive"):
        _open(p, bkeys)


def test_trailing_data_rejected(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    p = tmp_path / "trail.bundle"
    p.write_bytes(base.read_bytes() + b"PK\x03\x04")
    with pytest.raises(InvalidInput, match="after the end-of-archive"):
        _open(p, bkeys)
    p.write_bytes(base.read_bytes() + b"\0" * 9216)  # record padding as GNU tar writes it is fine
    assert _open(p, bkeys).cluster == "c1"


# -- signatures --------------------------------------------------------------------------------------
def test_untrusted_signer(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    out = resign(base, tmp_path / "o.bundle", bkeys.other_signer, manifest=lambda d: d)
    with pytest.raises(VerificationError, match="not a --trust key"):
        _open(out, bkeys)


def test_untrusted_signer_claiming_trusted_key_id(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    trusted_id = manifest_doc(base)["signer"]
    out = resign(base, tmp_path / "o.bundle", bkeys.other_signer, manifest=lambda d: {**d, "signer": trusted_id})
    with pytest.raises(VerificationError, match="signature does not verify"):
        _open(out, bkeys)


def test_trust_in_another_key_only(base: Path, bkeys: Keys) -> None:
    with pytest.raises(VerificationError, match="not a --trust key"):
        open_bundle(base, [load_public_key(bkeys.other_signer_pub)], now=NOW)


def test_empty_trust_fails(base: Path) -> None:
    with pytest.raises(InvalidInput, match="no trusted signer"):
        open_bundle(base, [], now=NOW)


def test_missing_or_garbage_signature(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    entries = read_entries(base)
    out = write_entries(tmp_path / "nosig.bundle", entries[:-1])
    with pytest.raises(VerificationError, match="not signed"):
        _open(out, bkeys)
    out = resign(base, tmp_path / "garbage.bundle", bkeys.signer, signature=lambda s: b"\x30\x02\x01\x00")
    with pytest.raises(VerificationError, match="signature"):
        _open(out, bkeys)


def test_manifest_must_come_last(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    entries = read_entries(base)
    out = write_entries(tmp_path / "order.bundle", [entries[-2], entries[-1], *entries[:-2]])
    with pytest.raises(InvalidInput, match="last two members"):
        _open(out, bkeys)


# -- the manifest schema -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: {**d, "comment": "hi"}, "unknown field 'comment'"),
        (lambda d: {k: v for k, v in d.items() if k != "expires"}, "missing field 'expires'"),
        (lambda d: {**d, "format_version": 4}, "format_version must be one of 1, 2, 3"),
        (lambda d: {**d, "format_version": True}, "format_version must be one of 1, 2, 3"),
        (lambda d: {k: v for k, v in d.items() if k != "format_version"}, "format_version must be one of 1, 2, 3"),
        # format 3 (keyless) needs held_key, and then may carry no key member and no recipients
        (lambda d: {**d, "format_version": 3}, "missing field 'held_key'"),
        (
            lambda d: {**d, "format_version": 3, "held_key": {"key_id": "ab" * 32, "request_id": None}},
            "a format 3 \\(keyless\\) bundle carries no CA key member",
        ),
        (
            lambda d: {**d, "format_version": 3, "held_key": {"key_id": "AB" * 32, "request_id": None}},
            "held_key.key_id must be 64 lowercase hex",
        ),
        (lambda d: {**d, "format_version": 1}, "unknown field 'ceremony_head' \\(format_version 1 has no"),
        (lambda d: {k: v for k, v in d.items() if k != "ceremony_head"}, "missing field 'ceremony_head'"),
        (lambda d: {**d, "ceremony_head": "AB" * 32}, "ceremony_head must be null or 64 lowercase hex"),
        (lambda d: {**d, "ceremony_head": "ab" * 31}, "ceremony_head must be null or 64 lowercase hex"),
        (lambda d: {**d, "ceremony_head": 0}, "ceremony_head must be null or 64 lowercase hex"),
        (lambda d: {**d, "sequence": 0}, "sequence"),
        (lambda d: {**d, "sequence": True}, "sequence"),
        (lambda d: {**d, "cluster": "../c1"}, "cluster"),
        (lambda d: {**d, "expires": d["created"]}, "expires must be after created"),
        (lambda d: {**d, "expires": "2099-01-01T00:00:00Z"}, "at most 3650 days"),
        (lambda d: {**d, "created": "2026-02-30T00:00:00Z"}, "not a valid date"),
        (lambda d: {**d, "recipients": []}, "recipients must be listed"),
        (lambda d: {**d, "recipients": ["ssh-ed25519 AAAA"]}, "age X25519"),
        (lambda d: {**d, "members": [{**d["members"][0], "mode": 420}, *d["members"][1:]]}, "unknown field 'mode'"),
        (lambda d: {**d, "members": [{**d["members"][0], "encrypted": True}, *d["members"][1:]]}, "encrypted"),
        (lambda d: {**d, "members": [{**d["members"][0], "path": "../x"}, *d["members"][1:]]}, "not an allowed"),
        (lambda d: {**d, "members": d["members"][1:]}, "missing the cacerts/ca-cert.pem member"),
        (lambda d: {**d, "members": [*d["members"], d["members"][0]]}, "not unique"),
        (lambda d: {**d, "members": [{**d["members"][0], "size": -1}, *d["members"][1:]]}, "size"),
    ],
)
def test_schema_violations_rejected_even_when_signed(
    base: Path,
    bkeys: Keys,
    tmp_path: Path,
    mutate: Any,
    message: str,
) -> None:
    out = resign(base, tmp_path / "s.bundle", bkeys.signer, manifest=mutate)
    with pytest.raises(InvalidInput, match=message):
        _open(out, bkeys)


def test_non_canonical_manifest_rejected(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    from airgap.core.bundle import sign_manifest
    from airgap.core.keys import load_private_key

    entries = read_entries(base)
    doc = json.loads(entries[-2].data)
    for text in (json.dumps(doc, indent=1), json.dumps(doc, sort_keys=True) + "\n"):
        data = text.encode()
        sig = sign_manifest(load_private_key(bkeys.signer, None), data)
        out = write_entries(
            tmp_path / "nc.bundle", [*entries[:-2], RawEntry(MANIFEST_NAME, data), RawEntry(SIGNATURE_NAME, sig)]
        )
        with pytest.raises(InvalidInput, match="canonical"):
            _open(out, bkeys)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"a":1.5}', "floating-point"),
        (b'{"a":NaN}', "NaN"),
        (b"\xff", "not valid JSON"),
        (b"[" * 100000, "not valid JSON"),
    ],
)
def test_strict_json(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_manifest_json(raw, source="m")


def test_validate_rejects_non_object() -> None:
    with pytest.raises(InvalidInput, match="top level"):
        validate_manifest([], source="m")


# -- size caps --------------------------------------------------------------------------------------------
def test_size_caps(base: Path, bkeys: Keys) -> None:
    size = base.stat().st_size
    with pytest.raises(InvalidInput, match="bundle size limit"):
        _open(base, bkeys, limits=Limits(max_bundle_size=size - 1))
    with pytest.raises(InvalidInput, match="over the size limit"):
        _open(base, bkeys, limits=Limits(max_member_size=1000))
    with pytest.raises(InvalidInput, match="over the size limit"):
        _open(base, bkeys, limits=Limits(max_manifest_size=100))
    with pytest.raises(InvalidInput, match="more than 3 members"):
        _open(base, bkeys, limits=Limits(max_members=3))


# -- expiry -----------------------------------------------------------------------------------------------
def test_expired(base: Path, bkeys: Keys) -> None:
    exp = _open(base, bkeys).manifest.expires_at
    with pytest.raises(Refused, match="expired"):
        _open(base, bkeys, now=exp)
    assert _open(base, bkeys, now=exp - dt.timedelta(seconds=1)).cluster == "c1"


def test_expired_checked_after_signature(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    # an attacker cannot get a 'refused: expired' answer out of a forged bundle: the signature comes first
    out = resign(base, tmp_path / "e.bundle", bkeys.other_signer)
    with pytest.raises(VerificationError):
        _open(out, bkeys, now=NOW + dt.timedelta(days=400))


# -- inspect ----------------------------------------------------------------------------------------------
def test_inspect_reports_unverified_claims(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    doc = inspect_bundle(base)
    assert doc["verified"] is False
    assert doc["manifest"]["cluster"] == "c1"
    assert doc["manifest_problem"] is None
    forged = resign(base, tmp_path / "f.bundle", bkeys.other_signer, manifest=lambda d: {**d, "cluster": "prod"})
    assert inspect_bundle(forged)["manifest"]["cluster"] == "prod"  # claims, not facts
    bad = resign(base, tmp_path / "b.bundle", bkeys.signer, manifest=lambda d: {**d, "extra": 1})
    assert "unknown field" in inspect_bundle(bad)["manifest_problem"]
    entries = read_entries(base)
    pretty = RawEntry(MANIFEST_NAME, json.dumps(json.loads(entries[-2].data), indent=2).encode())
    shown = inspect_bundle(write_entries(tmp_path / "p.bundle", [*entries[:-2], pretty, entries[-1]]))
    assert shown["manifest"]["cluster"] == "c1"
    assert "not in canonical form" in shown["manifest_problem"]


# -- structurally random archives -------------------------------------------------------------------------
_NAMES = st.one_of(
    st.sampled_from(
        [
            MANIFEST_NAME,
            SIGNATURE_NAME,
            "cacerts/ca-cert.pem",
            "cacerts/ca-key.pem.age",
            "include/x",
            "../x",
            "/abs",
            "a/./b",
            "dir/",
            "",
        ]
    ),
    st.text(min_size=0, max_size=120),
)
_ENTRY = st.tuples(
    _NAMES,
    st.sampled_from(
        [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]
    ),
    st.binary(max_size=700),
    st.text(max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(_ENTRY, max_size=6),
    fmt=st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=8000)),
    flip=st.one_of(st.none(), st.tuples(st.integers(min_value=0, max_value=8000), st.integers(1, 255))),
)
def test_random_archives_only_raise_airgap_errors(
    entries: list[tuple[str, bytes, bytes, str]],
    fmt: int,
    cut: int | None,
    flip: tuple[int, int] | None,
    bkeys: Keys,
    tmp_path: Path,
) -> None:
    buf = io.BytesIO()
    try:
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for name, typ, data, link in entries:
                ti = tarfile.TarInfo(name)
                ti.type = typ
                ti.linkname = link
                ti.size = len(data) if typ in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
                tf.addfile(ti, io.BytesIO(data) if ti.size else None)
    except (ValueError, UnicodeError):
        return  # tarfile itself cannot write this (e.g. ustar name too long)
    raw = bytearray(buf.getvalue())
    if flip is not None and raw:
        raw[flip[0] % len(raw)] ^= flip[1]
    if cut is not None:
        raw = raw[:cut]
    p = tmp_path / "random.bundle"
    p.write_bytes(bytes(raw))
    with pytest.raises(AirgapError):  # nothing unsigned verifies, and nothing but AirgapError escapes
        open_bundle(p, trust_of(bkeys), now=NOW)
    try:
        doc = inspect_bundle(p)
    except AirgapError:
        return
    assert doc["verified"] is False


# -- ceremony_head -------------------------------------------------------------------------------------
def test_ceremony_head_is_covered_by_the_signature(logged_pki: Path, bkeys: Keys, tmp_path: Path) -> None:
    import re

    from airgap.core.keys import load_private_key, spki_sha256

    bundle = seal(logged_pki, tmp_path / "c1.bundle", bkeys).path
    head = _open(bundle, bkeys).ceremony_head
    assert head is not None and re.fullmatch("[0-9a-f]{64}", head)
    forged = "f" * 64
    # edited in place, signature kept: the signature fails
    entries = read_entries(bundle)
    edited = entries[-2].data.replace(head.encode(), forged.encode())
    assert edited != entries[-2].data
    out = write_entries(tmp_path / "edited.bundle", [*entries[:-2], RawEntry(MANIFEST_NAME, edited), entries[-1]])
    with pytest.raises(VerificationError, match="manifest signature does not verify"):
        _open(out, bkeys)
    # edited and re-signed by an untrusted key: not a --trust key
    out = resign(
        bundle, tmp_path / "stranger.bundle", bkeys.other_signer, manifest=lambda d: {**d, "ceremony_head": forged}
    )
    with pytest.raises(VerificationError, match="not a --trust key"):
        _open(out, bkeys)
    # ... also when it claims the officer's key id
    officer_id = spki_sha256(load_private_key(bkeys.signer, None))
    out = resign(
        bundle,
        tmp_path / "claims.bundle",
        bkeys.other_signer,
        manifest=lambda d: {**d, "ceremony_head": forged, "signer": officer_id},
    )
    with pytest.raises(VerificationError, match="manifest signature does not verify"):
        _open(out, bkeys)
    # dropping the head (or downgrading to format 1 to lose it) needs the officer's key as well
    out = resign(
        bundle,
        tmp_path / "downgraded.bundle",
        bkeys.other_signer,
        manifest=lambda d: {**{k: v for k, v in d.items() if k != "ceremony_head"}, "format_version": 1},
    )
    with pytest.raises(VerificationError, match="not a --trust key"):
        _open(out, bkeys)


def test_format_1_manifest_still_verifies(base: Path, bkeys: Keys, tmp_path: Path) -> None:
    """Bundles sealed before ceremony_head existed (format 1) are accepted; they carry no head."""
    out = resign(
        base,
        tmp_path / "v1.bundle",
        bkeys.signer,
        manifest=lambda d: {**{k: v for k, v in d.items() if k != "ceremony_head"}, "format_version": 1},
    )
    vb = _open(out, bkeys)
    assert vb.manifest.format_version == 1 and vb.ceremony_head is None
    assert b"ceremony_head" not in vb.manifest_bytes
    assert vb.manifest.canonical_bytes() == vb.manifest_bytes  # the model round-trips format 1 exactly
