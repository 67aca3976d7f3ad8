"""cacerts import into one cluster: create, unchanged, refuse, rotate, rollback, faults, races, kills."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airgap.connected.cacerts import apply_cacerts, import_to_cluster
from airgap.connected.kube import connect
from airgap.errors import ClusterError, InvalidInput, Refused
from tests.connected.kubehelpers import FAST, KEYS, Prepared, cacerts_manifest, namespace_manifest
from tests.helpers import REPO
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _import(c: Cluster, prepared: Prepared, **kw: object):  # type: ignore[no-untyped-def]
    return import_to_cluster(
        prepared, context=c.context, kubeconfig=c.kubeconfig, policy=FAST, record=prepared.record, **kw
    )


def _live(c: Cluster) -> dict:
    with connect(c.context, kubeconfig=c.kubeconfig, policy=FAST) as kube:
        s = kube.get("Secret", "cacerts", "istio-system")
    assert s is not None
    return s


def _backups(c: Cluster) -> list[dict]:
    with connect(c.context, kubeconfig=c.kubeconfig, policy=FAST) as kube:
        return kube.list("Secret", "istio-system", selector="airgap.dev/backup-of=cacerts")


def _data(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def _cleanup(c: Cluster) -> None:
    if c.emulator is None:  # a real cluster: leave it as we found it as far as we can
        with connect(c.context, kubeconfig=c.kubeconfig, policy=FAST) as kube:
            for s in _backups(c):
                kube.delete("Secret", s["metadata"]["name"], "istio-system")
            kube.delete("Secret", "cacerts", "istio-system")


@pytest.fixture
def cluster(kube_cluster: Cluster):  # type: ignore[no-untyped-def]
    yield kube_cluster
    _cleanup(kube_cluster)


def test_fresh_import_creates_namespace_and_four_keys(cluster: Cluster, pki: Path) -> None:
    p = Prepared(cacerts_manifest(pki / "c1", sequence=1), 1)
    result = _import(cluster, p)
    assert result.outcome == "created" and result.backup is None and p.recorded == 1
    live = _live(cluster)
    assert sorted(live["data"]) == sorted(KEYS)
    assert _data(live) == {k: (pki / "c1" / k).read_bytes() for k in KEYS}
    assert live["metadata"]["annotations"]["airgap.dev/sequence"] == "1"


def test_same_content_is_unchanged_and_writes_nothing(cluster: Cluster, pki: Path) -> None:
    p = Prepared(cacerts_manifest(pki / "c1"), 1)
    _import(cluster, p)
    rv = _live(cluster)["metadata"]["resourceVersion"]
    emu = cluster.emulator
    writes = len([r for r in emu.requests if r.method != "GET"]) if emu else 0
    again = _import(cluster, p)
    assert again.outcome == "unchanged" and not again.namespace_created
    assert _live(cluster)["metadata"]["resourceVersion"] == rv
    if emu:
        assert len([r for r in emu.requests if r.method != "GET"]) == writes


def test_different_existing_is_refused_and_untouched(cluster: Cluster, pki: Path) -> None:
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))
    before = _live(cluster)
    p2 = Prepared(cacerts_manifest(pki / "c2", sequence=2), 2)
    with pytest.raises(Refused) as info:
        _import(cluster, p2)
    msg = str(info.value)
    assert "secret istio-system/cacerts already exists with different content (sequence 1" in msg
    assert "pass --rotate" in msg and info.value.exit_code == 4
    after = _live(cluster)
    assert after == before and p2.recorded == 0 and _backups(cluster) == []


def test_rotate_backs_up_once_and_replaces_once(cluster: Cluster, pki: Path) -> None:
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))
    old = _live(cluster)
    p2 = Prepared(cacerts_manifest(pki / "c2", sequence=2), 2)
    result = _import(cluster, p2, rotate=True, now=lambda: T0)
    assert result.outcome == "rotated" and result.backup == "cacerts-backup-20260102-030405"
    backups = _backups(cluster)
    assert [b["metadata"]["name"] for b in backups] == ["cacerts-backup-20260102-030405"]
    assert _data(backups[0]) == _data(old)
    assert backups[0]["metadata"]["annotations"]["airgap.dev/sequence"] == "1"
    live = _live(cluster)
    assert _data(live) == {k: (pki / "c2" / k).read_bytes() for k in KEYS}
    assert live["metadata"]["uid"] == old["metadata"]["uid"]  # one update, not delete + create
    if cluster.emulator:
        puts = [r for r in cluster.emulator.requests_for("PUT", "/secrets/cacerts") if r.status == 200]
        assert len(puts) == 1
        assert cluster.emulator.requests_for("DELETE", "/secrets/cacerts") == []
    # rotating again to the same content changes nothing
    assert _import(cluster, p2, rotate=True).outcome == "unchanged"
    assert len(_backups(cluster)) == 1


def test_rollback_refused_even_with_rotate(cluster: Cluster, pki: Path) -> None:
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=5), 5))
    before = _live(cluster)
    with pytest.raises(Refused, match="holds bundle sequence 5, newer than this bundle's 3: refusing a rollback"):
        _import(cluster, Prepared(cacerts_manifest(pki / "c2", sequence=3), 3), rotate=True)
    assert _live(cluster) == before and _backups(cluster) == []


def test_fewer_than_four_keys_is_refused_before_any_write(cluster: Cluster, pki: Path) -> None:
    m = cacerts_manifest(pki / "c1")
    del m["data"]["ca-key.pem"]
    with pytest.raises(InvalidInput, match=r"lacks ca-key\.pem"):
        _import(cluster, Prepared(m, 1))
    with connect(cluster.context, kubeconfig=cluster.kubeconfig, policy=FAST) as kube:
        assert kube.get("Secret", "cacerts", "istio-system") is None


def test_503s_and_dropped_connections_mid_import(cluster: Cluster, pki: Path) -> None:
    emu = cluster.emu()
    emu.faults.fail(2, 503, method="POST", path="/namespaces")
    emu.faults.drop(1, after_write=True, method="POST", path="/api/v1/namespaces")  # namespace made, answer lost
    emu.faults.fail(1, 503, method="GET", path="/secrets/cacerts")
    emu.faults.drop(1, after_write=True, method="POST", path="/secrets")  # secret made, answer lost
    emu.faults.drop(1, method="GET", path="/secrets/cacerts")
    p = Prepared(cacerts_manifest(pki / "c1"), 1)
    result = _import(cluster, p)
    assert result.outcome == "created" and p.recorded == 1
    assert sorted(_live(cluster)["data"]) == sorted(KEYS)
    assert len(emu.list("secrets", "istio-system")) == 1
    statuses = [r.status for r in emu.requests_for("POST", "/namespaces/istio-system/secrets")]
    assert statuses[0] == 201 and 409 in statuses  # applied, answer dropped, retried: AlreadyExists, then read back


def test_cluster_down_is_exit_5_and_not_recorded(cluster: Cluster, pki: Path) -> None:
    emu = cluster.emu()
    emu.faults.fail(100, 503)
    p = Prepared(cacerts_manifest(pki / "c1"), 1)
    with pytest.raises(ClusterError, match="context test: get namespaces istio-system: 503") as info:
        _import(cluster, p)
    assert info.value.exit_code == 5 and p.recorded == 0


def test_conflicting_concurrent_update_during_rotate(cluster: Cluster, pki: Path) -> None:
    emu = cluster.emu()
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))
    racer_content = cacerts_manifest(pki / "c1", sequence=2, extra={"racer": "yes"})
    racer_content["data"]["ca-crl.pem"] = base64.b64encode(b"racer crl").decode()

    def racer() -> None:  # another operator writes cacerts between our read and our update
        emu.patch(
            "secrets",
            "istio-system",
            "cacerts",
            {"data": racer_content["data"], "metadata": {"annotations": {"airgap.dev/sequence": "2"}}},
        )

    emu.faults.before(racer, method="PUT", path="/secrets/cacerts")
    p = Prepared(cacerts_manifest(pki / "c2", sequence=3), 3)
    result = _import(cluster, p, rotate=True)
    assert result.outcome == "rotated"
    backups = _backups(cluster)
    assert len(backups) == 1  # the backup of the state we did not replace was removed
    assert _data(backups[0])["ca-crl.pem"] == b"racer crl"  # the backup holds what we actually replaced
    assert _data(_live(cluster)) == {k: (pki / "c2" / k).read_bytes() for k in KEYS}
    assert [r.status for r in emu.requests_for("PUT", "/secrets/cacerts")] == [409, 200]


def test_conflicting_update_with_newer_sequence_wins_and_we_refuse(cluster: Cluster, pki: Path) -> None:
    emu = cluster.emu()
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))

    def racer() -> None:
        emu.patch("secrets", "istio-system", "cacerts", {"metadata": {"annotations": {"airgap.dev/sequence": "9"}}})

    emu.faults.before(racer, method="PUT", path="/secrets/cacerts")
    with pytest.raises(Refused, match="newer than this bundle's 3"):
        _import(cluster, Prepared(cacerts_manifest(pki / "c2", sequence=3), 3), rotate=True)
    assert _backups(cluster) == []
    assert _data(_live(cluster)) == {k: (pki / "c1" / k).read_bytes() for k in KEYS}


KILL_SCRIPT = """
import json, sys
from airgap.connected.cacerts import import_to_cluster
from airgap.connected.kube import RetryPolicy
secret = json.load(open(sys.argv[1]))
class P:
    sequence = 2
    def namespace_manifest(self): return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}
    def cacerts_secret_manifest(self): return secret
import_to_cluster(P(), context=sys.argv[2], kubeconfig=sys.argv[3], rotate=True,
                  policy=RetryPolicy(attempts=2, backoff=0.01), record=lambda p: None)
print("done")
"""


def test_rerun_after_kill_completes_without_duplicates(cluster: Cluster, pki: Path, tmp_path: Path) -> None:
    emu = cluster.emu()
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))
    new = cacerts_manifest(pki / "c2", sequence=2)
    (tmp_path / "secret.json").write_text(json.dumps(new))
    gate = emu.faults.hold(method="PUT", path="/secrets/cacerts")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "secret.json"), cluster.context, str(cluster.kubeconfig)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert gate.arrived.wait(30), proc.communicate(timeout=5)
        os.kill(proc.pid, signal.SIGKILL)  # killed after the backup, before the replace landed
        proc.wait(timeout=10)
    finally:
        gate.release(apply=False)
    assert len(_backups(cluster)) == 1
    assert _data(_live(cluster)) == {k: (pki / "c1" / k).read_bytes() for k in KEYS}  # old still in place
    result = _import(cluster, Prepared(new, 2), rotate=True)
    assert result.outcome == "rotated"
    assert len(_backups(cluster)) == 1  # the killed run's backup is reused, not duplicated
    assert _data(_live(cluster)) == {k: (pki / "c2" / k).read_bytes() for k in KEYS}


def test_apply_cacerts_directly_with_an_existing_namespace(cluster: Cluster, pki: Path) -> None:
    with connect(cluster.context, kubeconfig=cluster.kubeconfig, policy=FAST) as kube:
        if kube.get("Namespace", "istio-system") is None:
            kube.create("Namespace", namespace_manifest())
        r = apply_cacerts(kube, namespace_manifest(), cacerts_manifest(pki / "c1"), sequence=1)
    assert r.outcome == "created" and r.namespace_created is False


# -- same CA material, newer bundle: the annotations follow ------------------------------------------


def test_same_content_newer_bundle_updates_annotations_only(cluster: Cluster, pki: Path) -> None:
    old = cacerts_manifest(pki / "c1", sequence=1, extra={"airgap.dev/ceremony-head": "aa" * 32})
    _import(cluster, Prepared(old, 1))
    with connect(cluster.context, kubeconfig=cluster.kubeconfig, policy=FAST) as kube:
        kube.patch("Secret", "cacerts", {"metadata": {"annotations": {"team.example/owner": "mesh"}}}, "istio-system")
    before = _live(cluster)
    new = cacerts_manifest(pki / "c1", sequence=2)  # same four files, newer bundle, no ceremony head
    p = Prepared(new, 2)
    result = _import(cluster, p)
    assert result.outcome == "annotated" and result.backup is None and p.recorded == 1
    assert result.describe() == (
        "context test: cacerts annotated (same CA material; airgap.dev annotations updated to sequence 2)"
    )
    live = _live(cluster)
    ann = live["metadata"]["annotations"]
    assert ann["airgap.dev/sequence"] == "2" and ann["airgap.dev/bundle-id"] == "test-c1-2"
    assert "airgap.dev/ceremony-head" not in ann  # a stale head is not left behind
    assert ann["team.example/owner"] == "mesh"  # annotations that are not ours are kept
    assert live["data"] == before["data"] and live["metadata"]["uid"] == before["metadata"]["uid"]
    assert live["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert _backups(cluster) == []
    if cluster.emulator:
        puts = cluster.emulator.requests_for("PUT", "/secrets/cacerts")
        assert [r.status for r in puts] == [200]
    # the same bundle again: now nothing differs
    assert _import(cluster, Prepared(new, 2)).outcome == "unchanged"


def test_same_content_older_bundle_is_a_rollback(cluster: Cluster, pki: Path) -> None:
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=4), 4))
    before = _live(cluster)
    p = Prepared(cacerts_manifest(pki / "c1", sequence=3), 3)
    with pytest.raises(Refused, match="holds bundle sequence 4, newer than this bundle's 3: refusing a rollback"):
        _import(cluster, p)
    assert _live(cluster) == before and p.recorded == 0


def test_annotation_update_conflict_is_decided_again(cluster: Cluster, pki: Path) -> None:
    emu = cluster.emu()
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))

    def racer() -> None:  # someone moves the sequence on between our read and our update
        emu.patch("secrets", "istio-system", "cacerts", {"metadata": {"annotations": {"airgap.dev/sequence": "7"}}})

    emu.faults.before(racer, method="PUT", path="/secrets/cacerts")
    with pytest.raises(Refused, match="holds bundle sequence 7, newer than this bundle's 2"):
        _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=2), 2))
    assert [r.status for r in emu.requests_for("PUT", "/secrets/cacerts")] == [409]
    assert _live(cluster)["metadata"]["annotations"]["airgap.dev/sequence"] == "7"


# -- dry run: GETs only, the same decision ------------------------------------------------------------


def _writes(c: Cluster) -> list[object]:
    """Requests that change something (a SelfSubjectAccessReview is a question: it stores nothing)."""
    emu = c.emu()
    return [r for r in emu.requests if r.method != "GET" and "selfsubjectaccessreviews" not in r.path]


def test_dry_run_plans_each_case_without_writing(cluster: Cluster, pki: Path) -> None:
    c1 = Prepared(cacerts_manifest(pki / "c1", sequence=1), 1)
    plan = _import(cluster, c1, dry_run=True)
    assert (plan.outcome, plan.dry_run, plan.namespace_created) == ("created", True, True)
    assert plan.describe() == "context test: would create cacerts; would create namespace istio-system"
    assert _writes(cluster) == [] and c1.recorded == 0
    _import(cluster, c1)
    writes = len(_writes(cluster))
    assert _import(cluster, c1, dry_run=True).outcome == "unchanged"
    newer = Prepared(cacerts_manifest(pki / "c1", sequence=2), 2)
    assert _import(cluster, newer, dry_run=True).describe() == (
        "context test: would update the cacerts annotations to sequence 2 (same CA material)"
    )
    other = Prepared(cacerts_manifest(pki / "c2", sequence=2), 2)
    with pytest.raises(Refused, match=r"^dry run: would refuse: context test: secret istio-system/cacerts already"):
        _import(cluster, other, dry_run=True)
    plan = _import(cluster, other, dry_run=True, rotate=True, now=lambda: T0)
    assert plan.describe() == (
        "context test: would rotate cacerts (saving the live secret as a new backup cacerts-backup-20260102-030405)"
    )
    older = Prepared(cacerts_manifest(pki / "c2", sequence=0), 0)
    with pytest.raises(Refused, match=r"dry run: would refuse: .* refusing a rollback"):
        _import(cluster, older, dry_run=True, rotate=True)
    assert len(_writes(cluster)) == writes and other.recorded == 0 and newer.recorded == 0
    assert _live(cluster)["metadata"]["annotations"]["airgap.dev/sequence"] == "1"


def test_dry_run_names_a_backup_it_would_reuse(cluster: Cluster, pki: Path) -> None:
    emu = cluster.emu()
    _import(cluster, Prepared(cacerts_manifest(pki / "c1", sequence=1), 1))
    live = _live(cluster)
    emu.create(
        "secrets",
        "istio-system",
        {
            "metadata": {"name": "cacerts-backup-20250101-000000", "labels": {"airgap.dev/backup-of": "cacerts"}},
            "data": live["data"],
        },
    )
    writes = len(_writes(cluster))
    plan = _import(cluster, Prepared(cacerts_manifest(pki / "c2", sequence=2), 2), dry_run=True, rotate=True)
    assert plan.backup == "cacerts-backup-20250101-000000" and plan.backup_exists
    assert "reusing the existing backup cacerts-backup-20250101-000000" in plan.describe()
    assert len(_writes(cluster)) == writes


def test_rollback_refusal_compares_sequences_of_the_same_cluster_only(pki: Path) -> None:
    """Issue 9 item 10: cluster c2's sequence 9 on the live secret is no rollback evidence for c1's bundle 1;
    since issue 23 (fault 9) another cluster's cacerts is refused as such, --rotate or not."""
    from airgap.connected.cacerts import _decide

    ours = cacerts_manifest(pki / "c1", sequence=1, extra={"airgap.dev/cluster": "c1"})
    other = cacerts_manifest(pki / "c2", sequence=9, extra={"airgap.dev/cluster": "c2"})
    same = cacerts_manifest(pki / "c2", sequence=9, extra={"airgap.dev/cluster": "c1"})
    legacy = cacerts_manifest(pki / "c2", sequence=9)  # imported before the cluster annotation existed
    for rotate in (True, False):
        with pytest.raises(Refused, match="annotated for cluster 'c2'") as exc:
            _decide(other, ours, sequence=1, rotate=rotate, where="w")
        assert "rollback" not in exc.value.message
    for live in (same, legacy):
        with pytest.raises(Refused, match="holds bundle sequence 9, newer than this bundle's 1: refusing a rollback"):
            _decide(live, ours, sequence=1, rotate=True, where="w")
