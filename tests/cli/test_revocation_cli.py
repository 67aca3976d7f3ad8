"""Issue 9, item 1: revocation is a state every act respects.

``ca revoke`` then ``bundle create`` is refused (exit 4, naming the CRL entry and ``ca rotate``);
a bundle that carries a CRL listing its own CA (made by an older airgap, or by hand) is refused by
``bundle import`` with ``--output-dir`` and with ``--context`` before anything is written; ``ca
list`` and ``mesh status`` show the CA as ``revoked``.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.kubeapi.fixtures)

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

import airgap.offline.bundle as offline_bundle
from airgap.connected.kube import connect
from airgap.connected.status import mesh_status
from airgap.core.keys import load_private_key
from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.conftest import PASSPHRASE
from tests.connected.kubehelpers import FAST, FAST_ENV, cacerts_manifest
from tests.helpers import one_error_line, run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster


def _revoke(pki: Path, passfile: Path, cluster: str = "c1") -> str:
    r = run_cli("ca", "revoke", cluster, "--reason", "keyCompromise", "--dir", pki, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    return r.out.split("serial ")[1].split()[0]


def _create(pki: Path, keys: Keys, passfile: Path, out: Path) -> object:
    return run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", keys.signer, "--recipient", keys.recipient_pub,
        "--passphrase-file", passfile, "--out", out,
    )  # fmt: skip


def _bundle_with_revoked_ca(pki: Path, keys: Keys, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What an older airgap (before this check) sealed after 'ca revoke c1': the CA and a CRL listing it."""
    with monkeypatch.context() as m:
        m.setattr(offline_bundle, "check_bundled_crl", lambda *a, **k: None)
        m.setattr(offline_bundle, "_refuse_revoked", lambda *a, **k: None)
        members = offline_bundle.cacerts_members(
            pki, "c1", pki_passphrase=PASSPHRASE, recipients=[keys.recipient], encrypt=True
        )
    assert any(x.path == "cacerts/ca-crl.pem" for x in members)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    offline_bundle.write_bundle(
        out,
        cluster="c1",
        sequence=1,
        bundle_id="ab" * 16,
        created=now,
        expires=now + dt.timedelta(days=1),
        sign_key=load_private_key(keys.signer, None),
        recipients=[keys.recipient],
        secret_members=members,
    )
    return out


def test_bundle_create_refuses_a_revoked_intermediate_naming_the_crl_entry_and_ca_rotate(
    pki: Path, passfile: Path, bkeys: Keys, tmp_path: Path
) -> None:
    serial = _revoke(pki, passfile)
    r = run_cli("ca", "list", "--dir", pki, "--json")
    rows = {x["cluster"]: x for x in json.loads(r.out)["intermediates"]}
    assert rows["c1"]["status"] == "revoked"
    before = tree(pki)
    r = _create(pki, bkeys, passfile, tmp_path / "c1.bundle")
    assert r.code == 4  # type: ignore[attr-defined]
    one_error_line(r, "revoked", "CRL #1 lists serial " + serial, "keyCompromise", "airgap ca rotate c1")  # type: ignore[arg-type]
    assert not (tmp_path / "c1.bundle").exists()
    assert tree(pki) == before  # no sequence number consumed, nothing written
    # Without the folder's CRL copy the PKI's revocation state still refuses it.
    (pki / "c1" / "ca-crl.pem").unlink()
    r = _create(pki, bkeys, passfile, tmp_path / "c1.bundle")
    assert r.code == 4  # type: ignore[attr-defined]
    one_error_line(r, "revocations.json lists serial " + serial, "airgap ca rotate c1")  # type: ignore[arg-type]
    # After 'ca rotate' the replacement ships (its CRL lists only the old serial).
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    r = _create(pki, bkeys, passfile, tmp_path / "c1.bundle")
    assert r.code == 0, r.err  # type: ignore[attr-defined]


def test_bundle_import_output_dir_refuses_a_ca_listed_in_the_bundles_crl(
    pki: Path, passfile: Path, bkeys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = _revoke(pki, passfile)
    bundle = _bundle_with_revoked_ca(pki, bkeys, tmp_path / "old.bundle", monkeypatch)
    state = tmp_path / "state"
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
        "--output-dir", tmp_path / "out", "--plaintext-secrets", env={"AIRGAP_STATE_DIR": str(state)},
    )  # fmt: skip
    assert r.code == 4
    one_error_line(r, "the CA is revoked", f"lists serial {serial}", "keyCompromise", "airgap ca rotate c1")
    assert not (tmp_path / "out").exists() and not state.exists()


def test_bundle_import_context_refuses_a_revoked_ca_before_touching_the_cluster(
    kube_cluster: Cluster, pki: Path, passfile: Path, bkeys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _revoke(pki, passfile)
    bundle = _bundle_with_revoked_ca(pki, bkeys, tmp_path / "old.bundle", monkeypatch)
    emu = kube_cluster.emu()
    for extra in ([], ["--rotate"]):
        r = run_cli(
            "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
            "--context", kube_cluster.context, *extra,
            env={**kube_cluster.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")},
        )  # fmt: skip
        assert r.code == 4
        one_error_line(r, "the CA is revoked", alone=False)
    assert [q for q in emu.requests if q.method != "GET"] == []
    assert emu.get("secrets", "istio-system", "cacerts") is None


def test_mesh_status_shows_a_cacerts_listed_in_its_own_crl_as_revoked(
    kube_cluster: Cluster, pki: Path, passfile: Path
) -> None:
    serial = _revoke(pki, passfile)
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    emu.wait_idle()
    secret = cacerts_manifest(pki / "c1")
    secret["data"]["ca-crl.pem"] = base64.b64encode((pki / "c1" / "ca-crl.pem").read_bytes()).decode()
    emu.create("secrets", "istio-system", secret)
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        st = mesh_status(kube)
    assert st.cacerts is not None and st.cacerts["status"] == "revoked"
    assert f"lists serial {serial}" in str(st.cacerts["revoked"])
    assert any(p.startswith("cacerts CA certificate is revoked") and "ca rotate" in p for p in st.problems)
    assert not st.ok and "(revoked)" in st.text()


def test_mesh_status_ignores_a_crl_no_root_signed(kube_cluster: Cluster, pki: Path, passfile: Path) -> None:
    """A CRL in the secret counts only when a root in root-cert.pem signed it (cluster state is untrusted)."""
    from tests.bundle_fixtures import crl_for as _crl_for

    emu = kube_cluster.emu()
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    secret = cacerts_manifest(pki / "c1")
    secret["data"]["ca-crl.pem"] = base64.b64encode(_crl_for(pki, "c2")).decode()  # signed by c2's CA, not a root
    emu.create("secrets", "istio-system", secret)
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        st = mesh_status(kube)
    assert st.cacerts is not None and st.cacerts["status"] != "revoked" and st.cacerts["revoked"] is None
