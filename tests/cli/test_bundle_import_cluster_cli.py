"""``airgap bundle import --context`` through the CLI against the Kubernetes API emulator.

What each run says (created / unchanged / annotated / rotated (backup NAME)), that "unchanged"
and every dry run write nothing, the live rollback check, fleets (one cluster down does not stop
the others, the exit code is the worst one, the bundle is verified once before any cluster is
touched) and what the local record of accepted bundles holds afterwards.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.kubeapi.fixtures)

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bundle_fixtures import (  # noqa: F401
    Keys,
    _logged_pki_template,
    bkeys,
    logged_pki,
)
from tests.connected.kubehelpers import FAST_ENV
from tests.helpers import Result, one_error_line, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster, Fleet
from tests.kubeapi.server import Emulator


def _env(c: Cluster | Fleet, state: Path) -> dict[str, str]:
    return {**c.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(state)}


def _create(pki: Path, keys: Keys, passfile: Path, out: Path) -> Path:
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", keys.signer, "--recipient", keys.recipient_pub,
        "--passphrase-file", passfile, "--out", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    return out


def _import(bundle: Path, keys: Keys, env: dict[str, str], *extra: str) -> Result:
    return run_cli(
        "bundle", "import", bundle, "--trust", keys.signer_pub, "--identity", keys.identity, "--cluster", "c1",
        *extra, env=env,
    )  # fmt: skip


def _writes(emu: Emulator) -> list[str]:
    """Requests that change something (a SelfSubjectAccessReview is a question: it stores nothing)."""
    return [
        f"{r.method} {r.path}" for r in emu.requests if r.method != "GET" and "selfsubjectaccessreviews" not in r.path
    ]


def _one_error_line(r: Result) -> str:
    return one_error_line(r, alone=False)  # progress lines may stand beside the error


def _accepted(state: Path) -> list[dict[str, object]]:
    if not (state / "accepted.json").exists():
        return []
    return list(json.loads((state / "accepted.json").read_text())["accepted"].values())


def _rows(out: str, contexts: list[str]) -> dict[str, list[str]]:
    return {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split() and ln.split()[0] in contexts}


@pytest.fixture
def bundle(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> Path:
    return _create(pki, bkeys, passfile, tmp_path / "c1.bundle")


# -- one cluster -------------------------------------------------------------------------------------


def test_created_then_unchanged_writes_nothing(
    kube_cluster: Cluster, bundle: Path, bkeys: Keys, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path / "state")
    r = _import(bundle, bkeys, env, "--context", "test")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].startswith("Verified OK: bundle ")
    assert "context test: cacerts created; namespace istio-system created" in r.out
    assert [a["sequence"] for a in _accepted(tmp_path / "state")] == [1]
    secret = emu.get("secrets", "istio-system", "cacerts")
    assert secret is not None and len(secret["data"]) == 4
    writes = _writes(emu)
    assert writes  # the first run did write

    r = _import(bundle, bkeys, env, "--context", "test")
    assert r.code == 0, r.err
    assert "context test: cacerts unchanged (same content and annotations; nothing written)" in r.out
    assert "created" not in r.out
    assert _writes(emu) == writes  # the emulator saw no write on the second run
    assert emu.get("secrets", "istio-system", "cacerts") == secret


def test_newer_bundle_with_the_same_material_updates_the_annotations(
    kube_cluster: Cluster, logged_pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    """A newer bundle of the same CA material: the live sequence, bundle id and ceremony head follow."""
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path / "state")
    first = _create(logged_pki, bkeys, passfile, tmp_path / "one.bundle")
    second = _create(logged_pki, bkeys, passfile, tmp_path / "two.bundle")
    doc2 = json.loads(run_cli("bundle", "verify", second, "--trust", bkeys.signer_pub, "--json").out)
    assert doc2["sequence"] == 2 and doc2["ceremony_head"]
    assert _import(first, bkeys, env, "--context", "test").code == 0
    before = emu.get("secrets", "istio-system", "cacerts")
    assert before is not None and before["metadata"]["annotations"]["airgap.dev/sequence"] == "1"
    assert before["metadata"]["annotations"]["airgap.dev/ceremony-head"] != doc2["ceremony_head"]

    r = _import(second, bkeys, env, "--context", "test")
    assert r.code == 0, r.err
    assert "context test: cacerts annotated (same CA material; airgap.dev annotations updated to sequence 2)" in r.out
    live = emu.get("secrets", "istio-system", "cacerts")
    assert live is not None
    ann = live["metadata"]["annotations"]
    assert ann["airgap.dev/sequence"] == "2"
    assert ann["airgap.dev/bundle-id"] == doc2["bundle_id"]
    assert ann["airgap.dev/ceremony-head"] == doc2["ceremony_head"]
    assert live["data"] == before["data"] and live["metadata"]["uid"] == before["metadata"]["uid"]
    assert emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts") == []
    assert [q.status for q in emu.requests_for("PUT", "/secrets/cacerts")] == [200]  # one conditional update
    assert [a["sequence"] for a in _accepted(tmp_path / "state")] == [2]

    # another jump host (no local record) with the older bundle: the live annotation refuses it
    writes = _writes(emu)
    r = _import(first, bkeys, _env(kube_cluster, tmp_path / "other-host"), "--context", "test", "--rotate")
    assert r.code == 4
    assert _one_error_line(r) == (
        "airgap: error: context test: secret istio-system/cacerts holds bundle sequence 2, newer than this "
        "bundle's 1: refusing a rollback"
    )
    assert _writes(emu) == writes and emu.get("secrets", "istio-system", "cacerts") == live
    assert _accepted(tmp_path / "other-host") == []


def test_rotate_names_the_backup(
    kube_cluster: Cluster, bundle: Path, bkeys: Keys, passfile: Path, pki: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    emu.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "b2xk"}})
    r = _import(bundle, bkeys, _env(kube_cluster, tmp_path / "state"), "--context", "test", "--rotate")
    assert r.code == 0, r.err
    backups = emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts")
    assert len(backups) == 1
    assert f"context test: cacerts rotated (backup {backups[0]['metadata']['name']})" in r.out


def test_record_failure_after_the_write_says_the_cluster_holds_it(
    kube_cluster: Cluster, bundle: Path, bkeys: Keys, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    state = tmp_path / "state-is-a-file"
    state.write_text("not a folder\n")
    r = _import(bundle, bkeys, _env(kube_cluster, state), "--context", "test")
    assert r.code == 3
    assert _one_error_line(r) == (
        "airgap: error: context test: cacerts created in the cluster, but this host's record of accepted "
        f"bundles was not written: {state}: exists and is not a folder"
    )
    assert emu.get("secrets", "istio-system", "cacerts") is not None
    assert state.read_text() == "not a folder\n"


# -- dry run with --context: read, decide, write nothing ---------------------------------------------------


def test_dry_run_with_context_says_what_would_happen(
    kube_cluster: Cluster, bundle: Path, bkeys: Keys, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    state = tmp_path / "state"
    env = _env(kube_cluster, state)
    r = _import(bundle, bkeys, env, "--context", "test", "--dry-run")
    assert r.code == 0, r.err
    assert "context test: would create cacerts; would create namespace istio-system" in r.out
    assert r.out.rstrip().endswith("Dry run: nothing written.")
    assert _writes(emu) == [] and _accepted(state) == []
    assert emu.get("namespaces", None, "istio-system") is None

    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    old = emu.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "b2xk"}})
    writes = _writes(emu)
    r = _import(bundle, bkeys, env, "--context", "test", "--dry-run")
    assert r.code == 4
    assert _one_error_line(r).startswith(
        "airgap: error: dry run: would refuse: context test: secret istio-system/cacerts already exists with "
        "different content"
    )
    r = _import(bundle, bkeys, env, "--context", "test", "--dry-run", "--rotate")
    assert r.code == 0, r.err
    assert "context test: would rotate cacerts (saving the live secret as a new backup cacerts-backup-" in r.out
    assert _writes(emu) == writes and emu.get("secrets", "istio-system", "cacerts") == old
    assert emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts") == []
    assert _accepted(state) == []

    emu.delete("secrets", "istio-system", "cacerts")
    assert _import(bundle, bkeys, env, "--context", "test").code == 0
    writes = _writes(emu)
    r = _import(bundle, bkeys, env, "--context", "test", "--dry-run")
    assert r.code == 0 and "cacerts unchanged (same content and annotations; nothing would be written)" in r.out
    assert _writes(emu) == writes


def test_usage_errors(bundle: Path, bkeys: Keys, tmp_path: Path) -> None:
    env = {"AIRGAP_STATE_DIR": str(tmp_path / "state")}
    r = _import(bundle, bkeys, env, "--context", "a", "--output-dir", str(tmp_path / "out"))
    assert r.code == 2 and "--output-dir would write a Secret in plaintext" in r.err
    assert not (tmp_path / "out").exists()
    r = _import(bundle, bkeys, env, "--context", "a", "--context", "b", "--parallel", "0")
    assert r.code == 2 and "--parallel" in r.err
    r = _import(bundle, bkeys, env, "--context", "")
    assert r.code == 3 and _one_error_line(r) == "airgap: error: --context must not be empty"
    assert _accepted(tmp_path / "state") == []


# -- fleets ------------------------------------------------------------------------------------------------


def test_fleet_one_cluster_down_does_not_stop_the_others(kube_fleet, bundle: Path, bkeys: Keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(3)
    fleet.emulators["c2"].faults.fail(100000, 503)  # persistent
    state = tmp_path / "state"
    env = _env(fleet, state)
    args = [a for c in fleet.contexts for a in ("--context", c)]
    r = _import(bundle, bkeys, env, *args, "--parallel", "2")
    assert r.code == 5  # the worst cluster's code
    rows = _rows(r.out, fleet.contexts)
    assert rows["c1"][1:3] == ["created", "0"] and rows["c3"][1:3] == ["created", "0"]
    assert rows["c2"][1:3] == ["failed", "5"] and "503 ServiceUnavailable" in " ".join(rows["c2"])
    assert _one_error_line(r) == "airgap: error: 1 of 3 clusters failed: c2 (exit 5)"
    assert r.out.count("Verified OK: ") == 1  # verified and decrypted once for the whole fleet
    for ctx in ("c1", "c3"):
        secret = fleet.emulators[ctx].get("secrets", "istio-system", "cacerts")
        assert secret is not None and len(secret["data"]) == 4
    assert fleet.emulators["c2"].get("secrets", "istio-system", "cacerts") is None
    assert [a["sequence"] for a in _accepted(state)] == [1]  # recorded after the first success

    # c2 recovers: the same bundle is accepted again (equal sequence, same bundle id); the others are unchanged
    fleet.emulators["c2"].faults.clear()
    r = _import(bundle, bkeys, env, *args)
    assert r.code == 0, r.err
    rows = _rows(r.out, fleet.contexts)
    assert [rows[c][1] for c in fleet.contexts] == ["unchanged", "created", "unchanged"]
    assert fleet.emulators["c2"].get("secrets", "istio-system", "cacerts") is not None


def test_fleet_verifies_before_touching_any_cluster(kube_fleet, bundle: Path, bkeys: Keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(3)
    args = [a for c in fleet.contexts for a in ("--context", c)]
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.other_signer_pub, "--identity", bkeys.identity,
        "--cluster", "c1", *args, env=_env(fleet, tmp_path / "state"),
    )  # fmt: skip
    assert r.code == 1, r.err
    assert _one_error_line(r).startswith(f"airgap: error: {bundle}")
    for emu in fleet.emulators.values():
        assert emu.requests == []  # not even a read
    r = _import(bundle, bkeys, _env(fleet, tmp_path / "state"), *args, "--cluster", "c2")  # wrong cluster: exit 4
    assert r.code == 4 and "was made for cluster 'c1', not 'c2'" in _one_error_line(r)
    for emu in fleet.emulators.values():
        assert emu.requests == []


def test_a_server_message_is_escaped_in_the_table(kube_fleet, bundle: Path, bkeys: Keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(2)
    fleet.emulators["c2"].faults.fail(100000, 500, message="boom\x1b]0;owned\x07\x1b[2J")  # a hostile apiserver
    args = [a for c in fleet.contexts for a in ("--context", c)]
    r = _import(bundle, bkeys, _env(fleet, tmp_path / "state"), *args)
    assert r.code == 5
    assert "\x1b" not in r.out + r.err and "\x07" not in r.out + r.err  # the table, and the notes on stderr
    assert "500 InternalError: injected fault: boom\\x1b]0;owned\\x07\\x1b[2J" in r.out


def test_fleet_with_a_mistyped_context_writes_nothing(kube_fleet, bundle: Path, bkeys: Keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(2)
    state = tmp_path / "state"
    args = [a for c in [fleet.contexts[0], "c9-typo", fleet.contexts[1]] for a in ("--context", c)]
    r = _import(bundle, bkeys, _env(fleet, state), *args)
    assert r.code == 3, r.out + r.err
    assert _one_error_line(r).startswith("airgap: error: context 'c9-typo' not found in kubeconfig ")
    for emu in fleet.emulators.values():
        assert _writes(emu) == []
    assert _accepted(state) == []


def test_fleet_dry_run_writes_nothing(kube_fleet, bundle: Path, bkeys: Keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(3)
    c3 = fleet.emulators["c3"]
    c3.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    c3.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"x": "eA=="}})
    state = tmp_path / "state"
    args = [a for c in fleet.contexts for a in ("--context", c)]
    r = _import(bundle, bkeys, _env(fleet, state), *args, "--dry-run")
    assert r.code == 4
    rows = _rows(r.out, fleet.contexts)
    assert [rows[c][1:3] for c in fleet.contexts] == [["would-create", "0"], ["would-create", "0"], ["failed", "4"]]
    assert "dry run: would refuse" in " ".join(rows["c3"])
    assert "Dry run: nothing written." in r.out
    assert _one_error_line(r) == "airgap: error: 1 of 3 clusters failed: c3 (exit 4)"
    for emu in fleet.emulators.values():
        assert _writes(emu) == []
    assert _accepted(state) == []
