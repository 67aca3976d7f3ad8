"""``seal_bundle``: what goes into a bundle, the sequence number, and refusals."""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from airgap.core import age
from airgap.core.bundle import open_bundle
from airgap.core.keys import load_private_key, load_private_key_pem, load_public_key, spki_sha256
from airgap.errors import InvalidInput, Refused, VerificationError
from airgap.offline import ceremony
from airgap.offline.bundle import last_sequence, seal_bundle
from airgap.offline.ceremony import Officer, head_hash, verify_log
from airgap.offline.ceremony import read_entries as log_entries
from tests.bundle_fixtures import (  # noqa: F401
    NOW,
    Keys,
    _logged_pki_template,
    bkeys,
    logged_pki,
    make_bundle,
    read_entries,
    seal,
    trust_of,
)
from tests.bundle_fixtures import crl_for as _crl_for
from tests.conftest import PASSPHRASE


def test_bundle_contents(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    inc = tmp_path / "istio-1.2.3-linux-amd64.tar.gz"
    inc.write_bytes(bytes(range(256)) * 5000)
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys, includes=(inc,))
    vb = open_bundle(bundle, trust_of(bkeys), now=NOW)
    m = vb.manifest
    assert m.cluster == "c1" and m.sequence == 1
    assert m.signer == spki_sha256(load_private_key_pem(bkeys.signer.read_bytes(), None, source="k"))
    assert (m.expires_at - m.created_at).days == 30
    inc_entry = m.member("include/istio-1.2.3-linux-amd64.tar.gz")
    assert inc_entry is not None
    assert inc_entry.sha256 == hashlib.sha256(inc.read_bytes()).hexdigest()
    for name in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
        assert vb.member_bytes(f"cacerts/{name}") == (pki / "c1" / name).read_bytes()
    # the CA key is age-encrypted; decrypted, it is the PKI key in plain PKCS#8 (what istiod reads)
    assert vb.manifest.member("cacerts/ca-key.pem") is None
    plain = age.decrypt(
        vb.member_bytes("cacerts/ca-key.pem.age"),
        age.load_identities(bkeys.identity, None),
        source="t",
        max_size=1 << 20,
    )
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    stored = load_private_key_pem((pki / "c1" / "ca-key.pem").read_bytes(), PASSPHRASE, source="k")
    assert load_private_key_pem(plain, None, source="p").private_numbers() == stored.private_numbers()  # type: ignore[union-attr]
    assert b"PRIVATE KEY" not in bundle.read_bytes()


def test_real_tar_reads_bundle(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    out = subprocess.run(["tar", "tvf", bundle], capture_output=True, text=True, check=True).stdout
    assert "cacerts/ca-key.pem.age" in out and "manifest.json.sig" in out
    with tarfile.open(bundle) as tf:
        assert [m.name for m in tf.getmembers()][-2:] == ["manifest.json", "manifest.json.sig"]
        assert all(m.isreg() and m.uid == 0 and m.mtime == 0 for m in tf.getmembers())


def test_sequence_grows_per_cluster(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    seqs = []
    for i in range(3):
        b, *_ = make_bundle(pki, tmp_path, keys=bkeys, name=f"c1-{i}.bundle")
        seqs.append(open_bundle(b, trust_of(bkeys), now=NOW).sequence)
    b2, *_ = make_bundle(pki, tmp_path, "c2", keys=bkeys)
    assert seqs == [1, 2, 3]
    assert open_bundle(b2, trust_of(bkeys), now=NOW).sequence == 1
    assert last_sequence(pki, "c1") == 3
    state = json.loads((pki / "state" / "sequence.json").read_text())
    assert state["clusters"]["c1"]["sequence"] == 3
    assert state["clusters"]["c2"]["sequence"] == 1


def test_crl_included_when_present(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    crl = _crl_for(pki, "c1")
    (pki / "c1" / "ca-crl.pem").write_bytes(crl)
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    vb = open_bundle(bundle, trust_of(bkeys), now=NOW)
    assert vb.member_bytes("cacerts/ca-crl.pem") == crl
    assert [e.name for e in read_entries(bundle)][4] == "cacerts/ca-crl.pem"


def test_broken_or_foreign_crl_is_not_sealed(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    (pki / "c1" / "ca-crl.pem").write_bytes(b"-----BEGIN X509 CRL-----\n")
    with pytest.raises(VerificationError, match="not a valid PEM CRL"):
        make_bundle(pki, tmp_path, keys=bkeys)
    (pki / "c1" / "ca-crl.pem").write_bytes(_crl_for(pki, "c2"))
    with pytest.raises(VerificationError, match="not signed by the bundled CA or root"):
        make_bundle(pki, tmp_path, keys=bkeys)
    assert not (tmp_path / "c1.bundle").exists()
    assert last_sequence(pki, "c1") == 0


def test_refuses_plaintext_key_without_no_encrypt(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    with pytest.raises(Refused, match="plaintext"):
        seal_bundle(
            "c1",
            pki_dir=pki,
            sign_key_path=bkeys.signer,
            sign_passphrase=None,
            pki_passphrase=PASSPHRASE,
            recipients=[],
            out=tmp_path / "x.bundle",
        )
    assert not (tmp_path / "x.bundle").exists()
    assert last_sequence(pki, "c1") == 0


def test_no_encrypt_is_explicit_and_private(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys, no_encrypt=True)
    vb = open_bundle(bundle, trust_of(bkeys), now=NOW)
    assert vb.manifest.recipients == ()
    assert vb.member_bytes("cacerts/ca-key.pem").startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cluster": "c9"}, Refused, "no CA for cluster 'c9'"),
        ({"cluster": "../c1"}, InvalidInput, "cluster name"),
        ({"pki_passphrase": b"wrong"}, InvalidInput, "wrong passphrase"),
        ({"expires_days": 0}, InvalidInput, "--expires"),
        ({"recipients": ["age1notvalid"]}, InvalidInput, "not an age X25519 recipient"),
        ({"no_encrypt": True}, InvalidInput, "cannot be used together"),
        ({"includes": ("MISSING",)}, InvalidInput, "not found"),
    ],
)
def test_refusals_write_nothing(
    pki: Path,
    tmp_path: Path,
    bkeys: Keys,
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    args: dict[str, object] = {
        "pki_dir": pki,
        "sign_key_path": bkeys.signer,
        "sign_passphrase": None,
        "pki_passphrase": PASSPHRASE,
        "recipients": [bkeys.recipient],
        "out": tmp_path / "out.bundle",
    }
    cluster = str(kwargs.pop("cluster", "c1"))
    if kwargs.get("includes") == ("MISSING",):
        kwargs["includes"] = (tmp_path / "missing.tar.gz",)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        seal_bundle(cluster, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "out.bundle").exists()
    assert last_sequence(pki, "c1") == 0


def test_refuses_to_overwrite(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    (tmp_path / "c1.bundle").write_bytes(b"keep")
    with pytest.raises(Refused, match="already exists"):
        make_bundle(pki, tmp_path, keys=bkeys)
    assert (tmp_path / "c1.bundle").read_bytes() == b"keep"


def test_broken_ca_material_is_not_sealed(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    # c2's key in c1's folder: the key no longer matches ca-cert.pem
    (pki / "c1" / "ca-key.pem").unlink()
    (pki / "c1" / "ca-key.pem").write_bytes((pki / "c2" / "ca-key.pem").read_bytes())
    with pytest.raises(VerificationError, match="does not match"):
        make_bundle(pki, tmp_path, keys=bkeys)
    assert not (tmp_path / "c1.bundle").exists()


def test_include_name_rules(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    a = tmp_path / "a"
    b = tmp_path / "sub"
    b.mkdir()
    a.mkdir()
    (a / "same.txt").write_text("1")
    (b / "same.txt").write_text("2")
    with pytest.raises(InvalidInput, match="two --include files"):
        make_bundle(pki, tmp_path, keys=bkeys, includes=(a / "same.txt", b / "same.txt"))
    with pytest.raises(InvalidInput, match="regular file"):
        make_bundle(pki, tmp_path, keys=bkeys, includes=(a,))
    weird = tmp_path / "has space.txt"
    weird.write_text("x")
    with pytest.raises(InvalidInput, match="not allowed"):
        make_bundle(pki, tmp_path, keys=bkeys, includes=(weird,))


@pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed (Debian package 'age')")
def test_age_cli_decrypts_the_bundled_ca_key(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Interop: the real tar and age CLIs get the CA key out of a bundle made by airgap."""
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    member = subprocess.run(["tar", "-xOf", bundle, "cacerts/ca-key.pem.age"], capture_output=True, check=True).stdout
    assert member.startswith(b"age-encryption.org/v1\n")
    plain = subprocess.run(["age", "-d", "-i", bkeys.identity], input=member, capture_output=True, check=True).stdout
    stored = load_private_key_pem((pki / "c1" / "ca-key.pem").read_bytes(), PASSPHRASE, source="k")
    assert load_private_key_pem(plain, None, source="age").private_numbers() == stored.private_numbers()  # type: ignore[union-attr]


# -- the ceremony log ----------------------------------------------------------------------------------
def _officer(path: Path) -> Officer:
    return Officer.from_key(load_private_key(path, None))


def test_logged_pki_bundle_carries_head_and_is_recorded(logged_pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Default officer = the signing key (it is the registered officer key)."""
    before = head_hash(logged_pki)
    n_before = len(log_entries(logged_pki))
    assert before is not None
    sealed = seal(logged_pki, tmp_path / "c1.bundle", bkeys)
    vb = open_bundle(sealed.path, trust_of(bkeys), now=NOW)
    assert vb.manifest.format_version == 2
    assert vb.ceremony_head == sealed.ceremony_head == before
    entries = log_entries(logged_pki)
    assert len(entries) == n_before + 1 and sealed.log_entry == n_before + 1
    last = entries[-1]
    assert last.act == "bundle" and last.prev == before  # the bundle's entry follows the head it carries
    assert last.params == {
        "cluster": "c1",
        "bundle_id": vb.bundle_id,
        "sequence": vb.sequence,
        "signer_key_id": vb.manifest.signer,
        "ceremony_head": before,
        "expires": vb.manifest.expires,
        "manifest_sha256": hashlib.sha256(vb.manifest_bytes).hexdigest(),
    }
    log = verify_log(logged_pki, [load_public_key(bkeys.signer_pub)], expect_head=before)
    assert log.anchored and log.head == head_hash(logged_pki) == last.hash
    # the next bundle carries the head that includes the first bundle's entry
    second = seal(logged_pki, tmp_path / "c1-2.bundle", bkeys)
    assert second.ceremony_head == last.hash and second.manifest.sequence == vb.sequence + 1


def test_logged_pki_refuses_without_the_officer_key(logged_pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Signed by another key, no --log-key: refused before a number is reserved or a byte written."""
    log_before = (logged_pki / "ceremony.log").read_bytes()
    head_before = (logged_pki / "ceremony-head.json").read_bytes()
    with pytest.raises(Refused, match=r"keeps a ceremony log and the signing key [0-9a-f]{64} is not its officer key"):
        seal(logged_pki, tmp_path / "c1.bundle", bkeys, sign_key=bkeys.other_signer)
    # an explicit log key that is not the registered one is refused too
    with pytest.raises(Refused, match="is not the officer key registered"):
        seal(logged_pki, tmp_path / "c1.bundle", bkeys, officer=_officer(bkeys.other_signer))
    assert not (tmp_path / "c1.bundle").exists()
    assert list(tmp_path.glob("*.bundle")) == [] and list(tmp_path.glob(".airgap-tmp-*")) == []
    assert last_sequence(logged_pki, "c1") == 0
    assert not (logged_pki / "state" / "sequence.json").exists()
    assert (logged_pki / "ceremony.log").read_bytes() == log_before
    assert (logged_pki / "ceremony-head.json").read_bytes() == head_before


def test_separate_log_key(logged_pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Bundles signed by one key, recorded with the officer's log key (``--log-key``)."""
    sealed = seal(
        logged_pki, tmp_path / "c1.bundle", bkeys, sign_key=bkeys.other_signer, officer=_officer(bkeys.signer)
    )
    other_id = spki_sha256(load_private_key(bkeys.other_signer, None))
    assert sealed.manifest.signer == other_id
    last = log_entries(logged_pki)[-1]
    assert last.act == "bundle" and last.params["signer_key_id"] == other_id
    assert last.signer == spki_sha256(load_private_key(bkeys.signer, None))
    verify_log(logged_pki, [load_public_key(bkeys.signer_pub)], expect_head=sealed.ceremony_head)


def test_broken_log_refuses_and_writes_nothing(logged_pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    lines = (logged_pki / "ceremony.log").read_bytes().splitlines()
    doc = json.loads(lines[2])
    doc["params"]["days"] = 1  # entry 3 edited after signing
    lines[2] = ceremony.canonical(doc)
    (logged_pki / "ceremony.log").write_bytes(b"".join(x + b"\n" for x in lines))
    with pytest.raises(VerificationError, match=r"entry 3 \(init\): signature does not verify.*refusing to extend"):
        seal(logged_pki, tmp_path / "c1.bundle", bkeys)
    assert not (tmp_path / "c1.bundle").exists()
    assert last_sequence(logged_pki, "c1") == 0


def test_unlogged_pki_has_null_head_and_no_log(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    sealed = seal(pki, tmp_path / "c1.bundle", bkeys)
    assert sealed.ceremony_head is None and sealed.log_entry is None
    assert open_bundle(sealed.path, trust_of(bkeys), now=NOW).ceremony_head is None
    assert b'"ceremony_head":null' in read_entries(sealed.path)[-2].data
    assert not ceremony.has_log(pki)


def test_explicit_log_key_starts_the_log(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    sealed = seal(pki, tmp_path / "c1.bundle", bkeys, officer=_officer(bkeys.signer))
    assert sealed.ceremony_head is None  # there was no log when it was sealed
    entries = log_entries(pki)
    assert [e.act for e in entries] == ["log-start", "bundle"] and sealed.log_entry == 2
    verify_log(pki, [load_public_key(bkeys.signer_pub)])


def test_failed_record_publishes_no_bundle(
    logged_pki: Path, tmp_path: Path, bkeys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log entry is written before the bundle is published: no entry, no bundle (a gap in numbers)."""

    def fail(*a: object, **k: object) -> None:
        raise InvalidInput("ceremony.log: disk full")

    log_before = (logged_pki / "ceremony.log").read_bytes()
    monkeypatch.setattr(ceremony, "record", fail)
    with pytest.raises(InvalidInput, match="disk full"):
        seal(logged_pki, tmp_path / "c1.bundle", bkeys)
    assert list(tmp_path.glob("*.bundle")) == [] and list(tmp_path.glob(".airgap-tmp-*")) == []
    assert (logged_pki / "ceremony.log").read_bytes() == log_before
    assert last_sequence(logged_pki, "c1") == 1  # reserved before writing: a gap, never a reused number


def test_rewritten_log_is_caught_by_the_bundles_head(logged_pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Even the officer's own key cannot rewrite history past a head a bundle carried."""
    sealed = seal(logged_pki, tmp_path / "c1.bundle", bkeys)
    officer = _officer(bkeys.signer)
    entries = log_entries(logged_pki)
    todo = [(e.act, dict(e.params)) for e in entries]
    todo[3][1]["days"] = 3650  # the issue entry, quietly edited and the whole chain re-signed
    (logged_pki / "ceremony.log").unlink()
    # re-signed with the original start time, so the inventory's record of the log still matches
    started = dt.datetime.fromisoformat(entries[0].time)
    ceremony._append(logged_pki, [], todo, officer, started)
    trust = [load_public_key(bkeys.signer_pub)]
    verify_log(logged_pki, trust)  # internally consistent, signed by the officer...
    with pytest.raises(VerificationError, match=f"no entry has hash {sealed.ceremony_head}"):
        verify_log(logged_pki, trust, expect_head=sealed.ceremony_head)  # ...but not the log the bundle saw


def test_no_encrypt_bundle_stores_the_ca_key_with_tar_mode_0600(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Issue 9 item 5: 'tar xf' of a --no-encrypt bundle must not give a world-readable CA key."""
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys, no_encrypt=True)
    with tarfile.open(bundle) as tf:
        modes = {m.name: m.mode for m in tf.getmembers()}
    assert modes["cacerts/ca-key.pem"] == 0o600
    assert modes["cacerts/ca-cert.pem"] == 0o644
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "xf", str(bundle), "-C", str(out)], check=True)  # the real tar, default umask
    assert (out / "cacerts" / "ca-key.pem").stat().st_mode & 0o077 == 0
