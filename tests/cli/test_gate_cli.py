"""``bundle import`` and the jump host's history; the gate's options; finding peers by server."""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.kubeapi.fixtures)

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.connected.gate import kubeconfig_servers, remote_peers
from airgap.connected.kube import connect
from airgap.core.history import read_events
from tests.bundle_fixtures import (  # noqa: F401
    Keys,
    _logged_pki_template,
    bkeys,
    logged_pki,
    make_bundle,
)
from tests.connected.kubehelpers import FAST
from tests.helpers import run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Fleet


def _import(bundle: Path, keys: Keys, state: Path, *extra: str | Path) -> Any:
    return run_cli(
        "bundle", "import", bundle, "--trust", keys.signer_pub, "--identity", keys.identity, "--cluster", "c1",
        *extra, env={"AIRGAP_STATE_DIR": str(state)},
    )  # fmt: skip


def test_an_output_dir_import_is_in_the_history_with_no_context(logged_pki: Path, bkeys: Keys, tmp_path: Path) -> None:
    bundle, *_ = make_bundle(logged_pki, tmp_path, keys=bkeys)
    state = tmp_path / "state"
    r = _import(bundle, bkeys, state, "--output-dir", tmp_path / "out", "--plaintext-secrets")
    assert r.code == 0, r.err
    (event,) = read_events(state).events
    secret = yaml.safe_load((tmp_path / "out" / "10-cacerts-secret.yaml").read_text())
    ann = secret["metadata"]["annotations"]
    assert event["kind"] == "bundle-import" and event["context"] is None and event["forced_split"] is None
    assert event["cluster"] == "c1" and event["sequence"] == int(ann["airgap.dev/sequence"])
    assert event["bundle_id"] == ann["airgap.dev/bundle-id"] and event["signer"] == ann["airgap.dev/signer"]
    assert event["ca_fingerprint"] == ann["airgap.dev/ca-fingerprint"] and len(event["ca_fingerprint"]) == 64
    assert event["ceremony_head"] == ann["airgap.dev/ceremony-head"]
    # a refused import (it exists already) adds nothing
    assert _import(bundle, bkeys, state, "--output-dir", tmp_path / "out", "--plaintext-secrets").code == 4
    assert len(read_events(state).events) == 1


def test_peer_and_force_split_only_gate_a_rotation(logged_pki: Path, bkeys: Keys, tmp_path: Path) -> None:
    bundle, *_ = make_bundle(logged_pki, tmp_path, keys=bkeys)
    state = tmp_path / "state"
    for extra in (("--peer", "c2"), ("--force-split", "why"), ("--rotate", "--force-split", " ")):
        r = _import(bundle, bkeys, state, "--context", "c1", *extra)
        assert r.code == 2, (extra, r.err)
    r = _import(bundle, bkeys, state, "--rotate", "--peer", "c2", "--output-dir", tmp_path / "o", "--plaintext-secrets")
    assert r.code == 2 and not (tmp_path / "o").exists() and not state.exists()


def test_peers_are_the_contexts_whose_server_a_remote_secret_names(kube_fleet: Any) -> None:
    fleet: Fleet = kube_fleet(3)
    servers = kubeconfig_servers(fleet.kubeconfig)
    assert sorted(servers.values()) == ["c1", "c2", "c3"]
    by_ctx = {v: k for k, v in servers.items()}

    def remote(name: str, server: str) -> dict[str, Any]:
        cfg = {"clusters": [{"name": name, "cluster": {"server": server}}]}
        data = {name: base64.b64encode(yaml.safe_dump(cfg).encode()).decode()}
        meta = {"name": f"istio-remote-secret-{name}", "labels": {"istio/multiCluster": "true"}}
        return {"metadata": meta, "data": data}

    emu = fleet.emulators["c1"]
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    emu.create("secrets", "istio-system", remote("x3", by_ctx["c3"]))
    emu.create("secrets", "istio-system", remote("gone", "https://127.0.0.1:1"))  # no context has it
    with connect("c1", kubeconfig=fleet.kubeconfig, policy=FAST) as kube:
        assert remote_peers(kube, servers) == ["c3"]


def test_another_name_of_the_target_is_not_its_peer(kube_fleet: Any, tmp_path: Path) -> None:
    """A second context for the target's own server (another user, an alias) is not a peer."""
    from airgap.connected.gate import check_split
    from airgap.connected.trust import ClusterTrust

    fleet: Fleet = kube_fleet(2)
    doc = yaml.safe_load(fleet.kubeconfig.read_text())
    doc["contexts"].append({"name": "c1-again", "context": dict(doc["contexts"][0]["context"])})
    fleet.kubeconfig.write_text(yaml.safe_dump(doc))
    for emu in fleet.emulators.values():
        emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    bundle = ClusterTrust("(bundle)", "a" * 64, ("a" * 64,))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("KUBECONFIG", str(fleet.kubeconfig))
        result, _before = check_split(bundle, ["c1"], ["c1-again", "c2"], force_split="test", policy=FAST)
    assert result.peers == ("c2",)  # c2 has no cacerts: unreadable, let through only by the force
    assert result.blocking == ("c2: secret istio-system/cacerts is missing",)


def test_an_unwritable_history_is_said_plainly_after_the_cluster_holds_the_bundle(
    logged_pki: Path, bkeys: Keys, kube_fleet: Any, tmp_path: Path
) -> None:
    fleet: Fleet = kube_fleet(1)
    bundle, *_ = make_bundle(logged_pki, tmp_path, keys=bkeys)
    state = tmp_path / "state"
    (state / "history.jsonl").mkdir(parents=True)  # not a file: the append is refused (exit 4)
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
        "--context", "c1", env={**fleet.env, "AIRGAP_STATE_DIR": str(state)},
    )  # fmt: skip
    assert r.code == 4, r.err
    assert "cacerts created in the cluster and recorded as accepted, but the jump host's history" in r.err
    assert "history.jsonl: exists and is not a regular file" in r.err
    assert fleet.emulators["c1"].get("secrets", "istio-system", "cacerts") is not None
    assert (state / "accepted.json").exists()
