"""Rotation: a cluster's next intermediate, and a root rotation through a dual-root trust bundle."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core import x509 as cx
from airgap.core.keys import keys_match, load_private_key
from airgap.errors import Refused
from airgap.offline.ca import CAStore
from airgap.offline.ceremony import Officer, verify_log
from airgap.offline.crl import read_state, revoke
from airgap.offline.rotate import begin_root_rotation, finish_root_rotation, rotate_intermediate
from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.conftest import PASSPHRASE
from tests.helpers import openssl, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster


def _cert(p: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(p.read_bytes())


def _check(folder: Path) -> cx.CAMaterial:
    """The cluster folder as istiod checks it (what bundle import runs), key included."""
    return cx.check_ca_material(
        ca_cert_pem=(folder / "ca-cert.pem").read_bytes(),
        ca_key=load_private_key(folder / "ca-key.pem", PASSPHRASE),
        ca_key_pem=(folder / "ca-key.pem").read_bytes(),
        cert_chain_pem=(folder / "cert-chain.pem").read_bytes(),
        root_cert_pem=(folder / "root-cert.pem").read_bytes(),
    )


def _workload(folder: Path, out: Path) -> Path:
    """A workload certificate (SPIFFE URI SAN) signed by the folder's intermediate, as istiod makes."""
    ca = _cert(folder / "ca-cert.pem")
    ca_key = load_private_key(folder / "ca-key.pem", PASSPHRASE)
    k = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=24))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/a")]),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    out.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return out


def _openssl_ok(trust: Path, cert: Path, untrusted: Path | None = None) -> bool:
    args = ["verify", "-CAfile", trust] + (["-untrusted", untrusted] if untrusted else []) + [cert]
    r = openssl(*args, check=False)
    return r.returncode == 0 and r.stdout.decode().strip().endswith(": OK")


def test_rotate_intermediate_archives_the_old_and_makes_the_new_current(pki: Path, tmp_path: Path) -> None:
    old_dir = tmp_path / "old-c1"
    shutil.copytree(pki / "c1", old_dir)
    old = _cert(pki / "c1" / "ca-cert.pem")
    c2_before = (pki / "c2" / "ca-cert.pem").read_bytes()
    r = rotate_intermediate(pki, "c1", days=200, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    new = _cert(pki / "c1" / "ca-cert.pem")
    assert new.serial_number != old.serial_number and not r.under_next_root
    assert r.old_serial == format(old.serial_number, "x") and r.new.fingerprint == cx.fingerprint(new)
    archived = pki / "archive" / "c1" / r.old_serial
    assert sorted(p.name for p in archived.iterdir()) == [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    assert (archived / "ca-cert.pem").read_bytes() == (old_dir / "ca-cert.pem").read_bytes()
    # same profile: L=c1, the SAN, the key type; a fresh key
    assert new.subject == old.subject
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == (
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    assert not keys_match(load_private_key(pki / "c1" / "ca-key.pem", PASSPHRASE), old.public_key())  # type: ignore[arg-type]
    _check(pki / "c1")
    assert _openssl_ok(pki / "root-cert.pem", pki / "c1" / "ca-cert.pem")
    # workloads from the old intermediate keep verifying against the new folder's trust
    leaf = _workload(old_dir, tmp_path / "leaf.pem")
    assert _openssl_ok(pki / "c1" / "root-cert.pem", leaf, old_dir / "ca-cert.pem")
    assert (pki / "c2" / "ca-cert.pem").read_bytes() == c2_before
    inv = CAStore(pki).read_inventory()
    assert [i.serial for i in inv.intermediates if i.cluster == "c1"] == [r.old_serial, r.new.serial]
    assert {s.cluster: s.status for s in CAStore(pki).status(PASSPHRASE)} == {"c1": "valid", "c2": "valid"}


def test_revoke_then_rotate_then_revoke_the_archived_one(pki: Path) -> None:
    store = CAStore(pki)
    revoke(store.path, "c1", reason="keyCompromise", passphrase=PASSPHRASE)
    assert {s.cluster: s.status for s in store.status(None)}["c1"] == "revoked"
    r = rotate_intermediate(store.path, "c1", days=100, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    assert {s.cluster: s.status for s in store.status(None)}["c1"] == "valid"
    # the new folder carries the current CRL, which still lists the old serial
    crl = x509.load_pem_x509_crl((pki / "c1" / "ca-crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(r.old_serial, 16)) is not None
    # an archived intermediate can be revoked by serial (here: already revoked: refused)
    with pytest.raises(Refused, match="already revoked"):
        revoke(store.path, "c1", reason="superseded", passphrase=PASSPHRASE, serial=r.old_serial)
    r2 = rotate_intermediate(store.path, "c1", days=100, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    revoke(store.path, "c1", reason="superseded", passphrase=PASSPHRASE, serial=r2.old_serial)
    assert [x.serial for x in read_state(pki).revoked] == [r.old_serial, r2.old_serial]


def test_rotate_refusals_change_nothing(pki: Path) -> None:
    store = CAStore(pki)
    before = tree(pki)
    with pytest.raises(Refused, match="no intermediate to rotate"):
        rotate_intermediate(store.path, "c9", days=10, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    with pytest.raises(Refused, match="would outlive the root"):
        rotate_intermediate(store.path, "c1", days=20000, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    assert [x for x in tree(pki) if x != ".lock"] == [x for x in before if x != ".lock"]


def test_an_interrupted_rotation_is_finished_by_the_next_command(pki: Path) -> None:
    """A crash between 'old folder to the archive' and 'new folder into place'."""
    store = CAStore(pki)
    staged = pki / ".rotate-c1"
    shutil.copytree(pki / "c1", staged)
    (pki / "archive" / "c1").mkdir(parents=True)
    (pki / "c1").rename(pki / "archive" / "c1" / "old")
    with store.locked():
        pass
    assert (pki / "c1" / "ca-cert.pem").exists() and not staged.exists()
    # a crash before the archive step: the staged folder is dropped, the current one kept
    shutil.copytree(pki / "c2", pki / ".rotate-c2")
    with store.locked():
        pass
    assert not (pki / ".rotate-c2").exists() and (pki / "c2" / "ca-cert.pem").exists()


def test_root_rotation_with_a_dual_root_trust_bundle(pki: Path, tmp_path: Path) -> None:
    store = CAStore(pki)
    officer = Officer.from_key(ec.generate_private_key(ec.SECP256R1()))
    revoke(store.path, "c2", reason="superseded", passphrase=PASSPHRASE, officer=officer)
    old_root = _cert(pki / "root-cert.pem")
    old_c2 = tmp_path / "old-c2"
    shutil.copytree(pki / "c2", old_c2)

    # step 1: the next root; every cluster now trusts both roots
    nxt = begin_root_rotation(
        store.path, key_type="ecdsa-p384", days=3650, org="Istio", cn="Root CA 2",
        passphrase=PASSPHRASE, officer=officer
    )
    new_root = _cert(pki / "next-root" / "root-cert.pem")
    assert nxt.fingerprint == cx.fingerprint(new_root)
    for c in ("c1", "c2"):
        roots = x509.load_pem_x509_certificates((pki / c / "root-cert.pem").read_bytes())
        assert roots == [old_root, new_root]
        _check(pki / c)  # the old intermediates still pass istiod's checks with the dual root
    with pytest.raises(Refused, match="already in progress"):
        begin_root_rotation(
            store.path, key_type="ecdsa-p256", days=10, org="I", cn="R", passphrase=PASSPHRASE, officer=officer
        )

    # step 2: each cluster's next intermediate comes from the next root
    r = rotate_intermediate(
        store.path, "c1", days=365, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE, officer=officer
    )
    assert r.under_next_root
    chain = x509.load_pem_x509_certificates((pki / "c1" / "cert-chain.pem").read_bytes())
    assert chain == [_cert(pki / "c1" / "ca-cert.pem"), new_root]
    assert _check(pki / "c1").root_cert == new_root
    assert _openssl_ok(pki / "c1" / "root-cert.pem", pki / "c1" / "ca-cert.pem")
    # during the transition, workloads of both generations verify against either cluster's trust
    new_leaf = _workload(pki / "c1", tmp_path / "new-leaf.pem")
    old_leaf = _workload(old_c2, tmp_path / "old-leaf.pem")
    assert _openssl_ok(pki / "c2" / "root-cert.pem", new_leaf, pki / "c1" / "ca-cert.pem")
    assert _openssl_ok(pki / "c1" / "root-cert.pem", old_leaf, old_c2 / "ca-cert.pem")
    assert {s.cluster: s.chains_to_root for s in store.status(None)} == {"c1": True, "c2": True}

    # step 3 is refused until every cluster is under the next root
    before = tree(pki)
    with pytest.raises(Refused, match="c2 still have an intermediate under the old root"):
        finish_root_rotation(store.path, passphrase=PASSPHRASE, officer=officer)
    assert tree(pki) == before
    rotate_intermediate(store.path, "c2", days=365, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE, officer=officer)
    rec = finish_root_rotation(store.path, passphrase=PASSPHRASE, officer=officer)
    assert rec.fingerprint == cx.fingerprint(new_root)
    assert _cert(pki / "root-cert.pem") == new_root and not (pki / "next-root").exists()
    archived = pki / "archive" / "root" / format(old_root.serial_number, "x")
    assert _cert(archived / "root-cert.pem") == old_root and (archived / "root-key.pem").exists()
    assert (archived / "root-key.pem").stat().st_mode & 0o077 == 0
    for c in ("c1", "c2"):
        assert x509.load_pem_x509_certificates((pki / c / "root-cert.pem").read_bytes()) == [new_root]
        _check(pki / c)
    assert CAStore(pki).read_inventory().root == rec
    # the CRL is now signed by the new root
    v = openssl("crl", "-in", pki / "ca-crl.pem", "-CAfile", pki / "root-cert.pem", "-verify", "-noout")
    assert "verify OK" in (v.stdout + v.stderr).decode()
    # and every act is in the log, which verifies against the officer's key with the files
    log = verify_log(pki, [officer.key.public_key()])  # type: ignore[list-item]
    acts = [e.act for e in log.entries]
    assert acts == [
        "log-start", "revoke", "crl", "key-create", "root-rotation-begin", "rotate", "rotate",
        "root-rotation-finish", "crl",
    ]  # fmt: skip


# -- the walk-through across the air gap: rotate, bundle, import --rotate into the emulator ---------


def test_rotation_walkthrough_into_the_emulator(
    kube_cluster: Cluster,
    pki: Path,
    bkeys: Keys,  # noqa: F811
    passfile: Path,
    tmp_path: Path,
) -> None:
    """old intermediate → new intermediate → bundle → import --rotate; then a whole root rotation,
    each step's cacerts Secret checked as istiod would."""
    import base64
    import json

    from tests.connected.kubehelpers import FAST_ENV
    from tests.helpers import run_cli

    emu = kube_cluster.emu()
    env = {**kube_cluster.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}
    pf = ("--passphrase-file", passfile)
    step = iter(range(1, 100))

    def ship(*, rotate: bool) -> dict[str, bytes]:
        bundle = tmp_path / f"c1-{next(step)}.bundle"
        r = run_cli(
            "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", bkeys.recipient_pub,
            *pf, "--out", bundle,
        )  # fmt: skip
        assert r.code == 0, r.err
        imp = ["bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity]
        imp += ["--cluster", "c1", "--context", kube_cluster.context] + (["--rotate"] if rotate else [])
        r = run_cli(*imp, env=env)
        assert r.code == 0, r.err
        secret = emu.get("secrets", "istio-system", "cacerts")
        assert secret is not None
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        cx.check_ca_material(
            ca_cert_pem=data["ca-cert.pem"],
            ca_key=None,
            ca_key_pem=data["ca-key.pem"],
            cert_chain_pem=data["cert-chain.pem"],
            root_cert_pem=data["root-cert.pem"],
        )
        assert data["ca-cert.pem"] == (pki / "c1" / "ca-cert.pem").read_bytes()
        return data

    def run(*args: object) -> None:
        r = run_cli(*map(str, args))
        assert r.code == 0, r.err

    first = ship(rotate=False)
    # 1. intermediate rotation: the next intermediate replaces the live one, the old is backed up
    run("ca", "rotate", "c1", "--dir", pki, "--days", "365", *pf)
    bundle = tmp_path / "c1-refused.bundle"
    run(
        "bundle",
        "create",
        "c1",
        "--dir",
        pki,
        "--sign-key",
        bkeys.signer,
        "--recipient",
        bkeys.recipient_pub,
        *pf,
        "--out",
        bundle,
    )
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
        "--context", kube_cluster.context, env=env,
    )  # fmt: skip
    assert r.code == 4 and "--rotate" in r.err  # without --rotate a different live CA is never replaced
    second = ship(rotate=True)
    assert second["ca-cert.pem"] != first["ca-cert.pem"] and second["root-cert.pem"] == first["root-cert.pem"]
    backups = emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts")
    assert len(backups) == 1

    # 2. root rotation, step 1: the dual-root trust reaches the cluster with the old intermediate
    old_root = _cert(pki / "root-cert.pem")
    run("ca", "rotate-root", "--dir", pki, "--key-type", "ecdsa-p256", "--cn", "Root CA 2", *pf)
    new_root = _cert(pki / "next-root" / "root-cert.pem")
    dual = ship(rotate=True)
    assert x509.load_pem_x509_certificates(dual["root-cert.pem"]) == [old_root, new_root]
    assert dual["ca-cert.pem"] == second["ca-cert.pem"]
    # step 2: the intermediate from the next root, both roots still trusted
    run("ca", "rotate", "c1", "--dir", pki, "--days", "365", *pf)
    run("ca", "rotate", "c2", "--dir", pki, "--days", "365", *pf)
    moved = ship(rotate=True)
    assert x509.load_pem_x509_certificates(moved["cert-chain.pem"])[-1] == new_root
    assert x509.load_pem_x509_certificates(moved["root-cert.pem"]) == [old_root, new_root]
    # step 3: the old root retired; the cluster ends with the new root only
    run("ca", "rotate-root", "--dir", pki, "--finish", *pf)
    final = ship(rotate=True)
    assert x509.load_pem_x509_certificates(final["root-cert.pem"]) == [new_root]
    state = json.loads((tmp_path / "state" / "accepted.json").read_text())
    assert [v["sequence"] for v in state["accepted"].values()] == [6]
