"""The shared import path: prepare_import, the manifests, rollback state, rendering."""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from airgap.connected.bundle_import import (
    ANN_CEREMONY_HEAD,
    PreparedImport,
    import_to_dir,
    last_accepted,
    prepare_import,
    record_accepted,
    render_to_dir,
    resolve_state_dir,
)
from airgap.core.bundle import CA_CERT, CA_KEY_AGE, CERT_CHAIN, ROOT_CERT
from airgap.core.keys import load_private_key
from airgap.core.sops import with_content_digest
from airgap.errors import InvalidInput, Refused, VerificationError
from airgap.offline.bundle import SecretMember, write_bundle
from tests.bundle_fixtures import (  # noqa: F401
    NOW,
    Keys,
    _logged_pki_template,
    bkeys,
    logged_pki,
    make_bundle,
    resign,
    seal,
    trust_of,
)
from tests.helpers import tree


def _prepare(bundle: Path, keys: Keys, state: Path, cluster: str = "c1", **kw: object) -> PreparedImport:
    return prepare_import(
        bundle,
        trust_of(keys),
        kw.pop("identity", keys.identity),  # type: ignore[arg-type]
        None,
        cluster,
        state_dir=state,
        now=kw.pop("now", NOW),  # type: ignore[arg-type]
    )


def test_prepare_and_manifests(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    p = _prepare(bundle, bkeys, tmp_path / "state")
    assert p.cluster == "c1" and p.sequence == 1
    assert p.signer == p.bundle.manifest.signer
    ns = p.namespace_manifest()
    assert ns == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}
    s = p.cacerts_secret_manifest()
    assert s["kind"] == "Secret" and s["type"] == "Opaque"
    assert s["metadata"]["name"] == "cacerts" and s["metadata"]["namespace"] == "istio-system"
    assert sorted(s["data"]) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    for name in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
        assert base64.b64decode(s["data"][name]) == (pki / "c1" / name).read_bytes()
    assert base64.b64decode(s["data"]["ca-key.pem"]).startswith(b"-----BEGIN PRIVATE KEY-----")
    ann = s["metadata"]["annotations"]
    assert ann["airgap.dev/bundle-id"] == p.bundle_id
    assert ann["airgap.dev/sequence"] == "1"
    assert ann["airgap.dev/signer"] == p.signer
    assert ann["airgap.dev/ca-fingerprint"] == p.fingerprint
    # prepare writes nothing, not even state
    assert not (tmp_path / "state").exists()


def test_render_is_deterministic_and_complete(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    p1 = _prepare(bundle, bkeys, tmp_path / "state")
    render_to_dir(p1, tmp_path / "a")
    p2 = _prepare(bundle, bkeys, tmp_path / "state")
    (tmp_path / "b").mkdir()
    render_to_dir(p2, tmp_path / "b")
    assert tree(tmp_path / "a") == ["00-namespace.yaml", "10-cacerts-secret.yaml"]
    for name in tree(tmp_path / "a"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).stat().st_mode & 0o077 == 0
    docs = yaml.safe_load((tmp_path / "a" / "10-cacerts-secret.yaml").read_text())
    assert docs == with_content_digest(p1.cacerts_secret_manifest())  # + gitops.airgap.dev/content-sha256
    with pytest.raises(Refused, match="already exists"):
        render_to_dir(p1, tmp_path / "b")


def test_record_and_rollback(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    old, *_ = make_bundle(pki, tmp_path, keys=bkeys, name="old.bundle")
    new, *_ = make_bundle(pki, tmp_path, keys=bkeys, name="new.bundle")
    record_accepted(_prepare(new, bkeys, state))
    assert last_accepted("c1", _prepare(new, bkeys, state).signer, state=state) is not None
    with pytest.raises(Refused, match="sequence 1 is older than sequence 2"):
        _prepare(old, bkeys, state)
    # the same bundle again is fine (idempotent re-import)
    record_accepted(_prepare(new, bkeys, state))
    doc = json.loads((state / "accepted.json").read_text())
    assert [v["sequence"] for v in doc["accepted"].values()] == [2]


def test_same_sequence_other_bundle_refused(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    b, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    record_accepted(_prepare(b, bkeys, state))
    twin = resign(b, tmp_path / "twin.bundle", bkeys.signer, manifest=lambda d: {**d, "bundle_id": "0" * 32})
    with pytest.raises(Refused, match="already accepted"):
        _prepare(twin, bkeys, state)


def test_record_rechecks_under_lock(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    old, *_ = make_bundle(pki, tmp_path, keys=bkeys, name="old.bundle")
    new, *_ = make_bundle(pki, tmp_path, keys=bkeys, name="new.bundle")
    prepared_old = _prepare(old, bkeys, state)  # checked before the newer one was accepted
    record_accepted(_prepare(new, bkeys, state))
    with pytest.raises(Refused, match="older"):
        record_accepted(prepared_old)


def test_state_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRGAP_STATE_DIR", str(tmp_path / "explicit"))
    assert resolve_state_dir() == tmp_path / "explicit"
    monkeypatch.delenv("AIRGAP_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir() == tmp_path / "xdg" / "airgap"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_state_dir() == tmp_path / "home" / ".local" / "state" / "airgap"


def test_corrupt_state_is_input_error(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "accepted.json").write_text("{not json")
    b, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    with pytest.raises(InvalidInput, match="import state is corrupt"):
        _prepare(b, bkeys, state)


def test_other_cluster_wrong_identity_expired(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    b2, *_ = make_bundle(pki, tmp_path, "c2", keys=bkeys)
    with pytest.raises(Refused, match="made for cluster 'c2', not 'c1'"):
        _prepare(b2, bkeys, state)
    with pytest.raises(InvalidInput, match="not one of the bundle's recipients"):
        _prepare(b2, bkeys, state, cluster="c2", identity=bkeys.other_identity)
    with pytest.raises(InvalidInput, match="give --identity"):
        _prepare(b2, bkeys, state, cluster="c2", identity=None)
    with pytest.raises(Refused, match="expired"):
        _prepare(b2, bkeys, state, cluster="c2", now=NOW + dt.timedelta(days=31))
    assert not state.exists()


def _material_bundle(pki: Path, tmp: Path, keys: Keys, members: list[SecretMember], name: str) -> Path:
    """A correctly signed bundle carrying CA material chosen by the test."""
    out = tmp / name
    write_bundle(
        out,
        cluster="c1",
        sequence=7,
        bundle_id="ab" * 16,
        created=NOW - dt.timedelta(hours=1),
        expires=NOW + dt.timedelta(days=1),
        sign_key=load_private_key(keys.signer, None),
        recipients=[keys.recipient],
        secret_members=members,
    )
    return out


def test_signed_but_broken_ca_material_fails(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    from airgap.core import age as agemod
    from airgap.core.keys import encode_private_key
    from airgap.core.x509 import cert_pem
    from tests.conftest import PASSPHRASE

    def files(cluster: str) -> dict[str, bytes]:
        return {n: (pki / cluster / n).read_bytes() for n in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem")}

    c1, c2 = files("c1"), files("c2")
    key2 = encode_private_key(load_private_key(pki / "c2" / "ca-key.pem", PASSPHRASE), None)
    enc2 = agemod.encrypt(key2, [bkeys.recipient])
    # the officer signed it, but the key is c2's while the cert is c1's
    bad_key = _material_bundle(
        pki,
        tmp_path,
        bkeys,
        [
            SecretMember(CA_CERT, c1["ca-cert.pem"], False),
            SecretMember(CA_KEY_AGE, enc2, True),
            SecretMember(CERT_CHAIN, c1["cert-chain.pem"], False),
            SecretMember(ROOT_CERT, c1["root-cert.pem"], False),
        ],
        "badkey.bundle",
    )
    with pytest.raises(VerificationError, match="does not match"):
        _prepare(bad_key, bkeys, tmp_path / "state")
    # a chain that does not start with ca-cert.pem
    bad_chain = _material_bundle(
        pki,
        tmp_path,
        bkeys,
        [
            SecretMember(CA_CERT, c2["ca-cert.pem"], False),
            SecretMember(CA_KEY_AGE, enc2, True),
            SecretMember(CERT_CHAIN, c1["cert-chain.pem"], False),
            SecretMember(ROOT_CERT, c1["root-cert.pem"], False),
        ],
        "badchain.bundle",
    )
    with pytest.raises(VerificationError, match="does not start with ca-cert"):
        _prepare(bad_chain, bkeys, tmp_path / "state")
    # a root that did not sign the chain
    from cryptography.hazmat.primitives.asymmetric import ec

    from airgap.core.x509 import build_root

    stranger_root = cert_pem(build_root(ec.generate_private_key(ec.SECP256R1()), org="X", cn="Other Root", days=30))
    bad_root = _material_bundle(
        pki,
        tmp_path,
        bkeys,
        [
            SecretMember(CA_CERT, c2["ca-cert.pem"], False),
            SecretMember(CA_KEY_AGE, enc2, True),
            SecretMember(CERT_CHAIN, c2["ca-cert.pem"], False),
            SecretMember(ROOT_CERT, stranger_root, False),
        ],
        "badroot.bundle",
    )
    with pytest.raises(VerificationError, match="does not verify to root-cert"):
        _prepare(bad_root, bkeys, tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_crl_is_rendered(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    from tests.bundle_fixtures import crl_for as _crl_for

    crl = _crl_for(pki, "c1")
    (pki / "c1" / "ca-crl.pem").write_bytes(crl)
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    data = _prepare(bundle, bkeys, tmp_path / "state").cacerts_secret_manifest()["data"]
    assert sorted(data) == ["ca-cert.pem", "ca-crl.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    assert base64.b64decode(data["ca-crl.pem"]) == crl


def test_prepared_import_repr_has_no_key(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    p = _prepare(bundle, bkeys, tmp_path / "state")
    assert "PRIVATE KEY" not in repr(p)
    assert "PRIVATE KEY" in base64.b64decode(p.cacerts_secret_manifest()["data"]["ca-key.pem"]).decode()


# -- the ceremony head on the jump host ----------------------------------------------------------------
def test_ceremony_head_annotation_and_record(logged_pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    from airgap.offline.ceremony import head_hash

    state = tmp_path / "state"
    head = head_hash(logged_pki)
    sealed = seal(logged_pki, tmp_path / "c1.bundle", bkeys)
    p = _prepare(sealed.path, bkeys, state)
    assert p.ceremony_head == head is not None
    assert p.cacerts_secret_manifest()["metadata"]["annotations"][ANN_CEREMONY_HEAD] == head
    written = import_to_dir(p, tmp_path / "out")
    assert [x.name for x in written] == ["00-namespace.yaml", "10-cacerts-secret.yaml"]
    assert f"airgap.dev/ceremony-head: {head}" in (tmp_path / "out" / "10-cacerts-secret.yaml").read_text()
    rec = last_accepted("c1", p.signer, state=state)
    assert rec is not None and (rec.sequence, rec.bundle_id, rec.ceremony_head) == (1, p.bundle_id, head)
    doc = json.loads((state / "accepted.json").read_text())
    assert doc["accepted"][f"c1/{p.signer}"] == {"sequence": 1, "bundle_id": p.bundle_id, "ceremony_head": head}


def test_no_log_no_annotation_null_record(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    b, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    p = _prepare(b, bkeys, state)
    assert p.ceremony_head is None
    assert ANN_CEREMONY_HEAD not in p.cacerts_secret_manifest()["metadata"]["annotations"]
    record_accepted(p)
    rec = last_accepted("c1", p.signer, state=state)
    assert rec is not None and rec.ceremony_head is None


def test_state_written_before_ceremony_head_existed_still_reads(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    state = tmp_path / "state"
    b, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    p = _prepare(b, bkeys, state)
    state.mkdir()
    old = {"format": 1, "accepted": {f"c1/{p.signer}": {"sequence": 1, "bundle_id": p.bundle_id}}}
    (state / "accepted.json").write_text(json.dumps(old))
    rec = last_accepted("c1", p.signer, state=state)
    assert rec is not None and rec.ceremony_head is None
    record_accepted(_prepare(b, bkeys, state))  # the same bundle again: allowed, and now keeps the head field
    assert "ceremony_head" in json.loads((state / "accepted.json").read_text())["accepted"][f"c1/{p.signer}"]
    (state / "accepted.json").write_text(
        json.dumps({"format": 1, "accepted": {"c1/x": {"sequence": 1, "bundle_id": "y", "ceremony_head": 5}}})
    )
    with pytest.raises(InvalidInput, match="import state is corrupt"):
        _prepare(b, bkeys, state)


@pytest.mark.parametrize("existing_dir", [False, True])
def test_unwritable_state_leaves_no_files(pki: Path, tmp_path: Path, bkeys: Keys, existing_dir: bool) -> None:
    """The record is written before the files are published: if it fails, DIR gets nothing."""
    state = tmp_path / "state"
    state.mkdir()
    (state / ".lock").mkdir()  # the state lock cannot be opened (works as root too, unlike chmod)
    b, *_ = make_bundle(pki, tmp_path, keys=bkeys)
    p = _prepare(b, bkeys, state)
    out = tmp_path / "out"
    if existing_dir:
        out.mkdir()
    with pytest.raises(InvalidInput, match="state folder is not writable"):
        import_to_dir(p, out)
    if existing_dir:
        assert sorted(x.name for x in out.iterdir()) == []
    else:
        assert not out.exists()
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".airgap-tmp-")] == []
    assert not (state / "accepted.json").exists()


def test_losing_a_race_leaves_no_files(pki: Path, tmp_path: Path, bkeys: Keys) -> None:
    """Checked before a newer bundle was accepted, recorded after: refused at record time, DIR empty."""
    state = tmp_path / "state"
    old, *_ = make_bundle(pki, tmp_path, keys=bkeys, name="old.bundle")
    new, *_ = make_bundle(pki, tmp_path, keys=bkeys, name="new.bundle")
    prepared_old = _prepare(old, bkeys, state)
    record_accepted(_prepare(new, bkeys, state))
    (tmp_path / "out").mkdir()
    with pytest.raises(Refused, match="older"):
        import_to_dir(prepared_old, tmp_path / "out")
    assert tree(tmp_path / "out") == []
    with pytest.raises(Refused, match="older"):
        import_to_dir(prepared_old, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
