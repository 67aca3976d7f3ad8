"""The fleet runner: order, bounded concurrency, isolation of failures, the worst exit code."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from airgap.connected.cacerts import import_to_fleet
from airgap.connected.fleet import FleetFailed, FleetReport, Outcome, run_fleet, run_on_contexts, unique_contexts
from airgap.errors import ClusterError, InvalidInput, Refused
from tests.connected.kubehelpers import FAST, Prepared, cacerts_manifest
from tests.kubeapi.fixtures import *  # noqa: F403


def test_order_worst_code_and_isolation() -> None:
    def task(ctx: str) -> Outcome:
        if ctx == "b":
            raise Refused("no")
        if ctx == "c":
            raise ClusterError("down")
        if ctx == "d":
            raise RuntimeError("bug")
        return Outcome(ctx, 0, "ok")

    report = run_fleet(["a", "b", "c", "d", "e"], task, parallel=3)
    assert [o.context for o in report.outcomes] == ["a", "b", "c", "d", "e"]
    assert [o.exit_code for o in report.outcomes] == [0, 4, 5, 70, 0]
    assert report.exit_code == 70
    with pytest.raises(FleetFailed) as info:
        report.raise_for_failures()
    assert info.value.exit_code == 70
    assert str(info.value) == "3 of 5 clusters failed: b (exit 4), c (exit 5), d (exit 70)"
    table = report.table().splitlines()
    assert table[0].split() == ["CONTEXT", "RESULT", "EXIT", "DETAIL"]
    assert table[2].split() == ["b", "failed", "4", "no"]


def test_concurrency_is_bounded() -> None:
    lock = threading.Lock()
    running, peak = 0, 0

    def task(ctx: str) -> Outcome:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return Outcome(ctx, 0, "ok")

    run_fleet([f"c{i}" for i in range(12)], task, parallel=3)
    assert 1 <= peak <= 3
    peak = 0
    run_fleet([f"c{i}" for i in range(4)], task, parallel=1)
    assert peak == 1


def test_inputs() -> None:
    assert unique_contexts(["a", "b", "a"]) == ["a", "b"]
    with pytest.raises(InvalidInput):
        run_fleet(["a"], lambda c: Outcome(c, 0, "ok"), parallel=0)
    with pytest.raises(InvalidInput):
        unique_contexts([""])


class _Calls:
    """What run_on_contexts called, in order."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def run(self, ctx: str | None) -> str:
        with self.lock:
            self.events.append(("run", ctx))
        if self.fail is not None and ctx == self.fail:
            raise Refused(f"{ctx}: no")
        return f"result of {ctx}"

    def show_one(self, result: str) -> None:
        self.events.append(("one", result))

    def row(self, ctx: str, result: str) -> Outcome:
        return Outcome(ctx, 0, "done", result)

    def show_fleet(self, report: FleetReport) -> None:
        self.events.append(("fleet", [(o.context, o.exit_code, o.detail) for o in report.outcomes]))

    def ask_first(self, names: list[str]) -> None:
        self.events.append(("ask", list(names)))


@pytest.mark.parametrize("contexts", [[None], ["c1"], []])
def test_run_on_contexts_one_cluster_shows_its_result_and_asks_nothing_first(contexts: list[str | None]) -> None:
    calls = _Calls()
    run_on_contexts(
        contexts,
        calls.run,
        show_one=calls.show_one,
        row=calls.row,
        show_fleet=calls.show_fleet,
        ask_first=calls.ask_first,
    )
    ctx = contexts[0] if contexts else None
    assert calls.events == [("run", ctx), ("one", f"result of {ctx}")]


def test_run_on_contexts_one_cluster_error_propagates_with_its_own_type() -> None:
    calls = _Calls(fail="c1")
    with pytest.raises(Refused, match=r"^c1: no$"):
        run_on_contexts(["c1"], calls.run, show_one=calls.show_one, row=calls.row, show_fleet=calls.show_fleet)
    assert calls.events == [("run", "c1")]


def test_run_on_contexts_fleet_asks_every_cluster_before_running_any() -> None:
    calls = _Calls(fail="b")
    run_on_contexts(
        ["a", "b", "c"],
        calls.run,
        show_one=calls.show_one,
        row=calls.row,
        show_fleet=calls.show_fleet,
        ask_first=calls.ask_first,
        parallel=2,
    )
    assert calls.events[0] == ("ask", ["a", "b", "c"])
    assert sorted(e for e in calls.events[1:4]) == [("run", "a"), ("run", "b"), ("run", "c")]
    assert calls.events[4:] == [("fleet", [("a", 0, "result of a"), ("b", 4, "b: no"), ("c", 0, "result of c")])]


def test_run_on_contexts_fleet_refused_by_ask_first_runs_nothing() -> None:
    calls = _Calls()

    def refuse(names: list[str]) -> None:
        raise Refused(f"denied on {names[1]}")

    with pytest.raises(Refused, match="denied on b"):
        run_on_contexts(
            ["a", "b"], calls.run, show_one=calls.show_one, row=calls.row, show_fleet=calls.show_fleet, ask_first=refuse
        )
    assert calls.events == []


def test_run_on_contexts_fleet_needs_every_context_named() -> None:
    calls = _Calls()
    with pytest.raises(InvalidInput, match="named --context"):
        run_on_contexts(["a", None], calls.run, show_one=calls.show_one, row=calls.row, show_fleet=calls.show_fleet)
    assert calls.events == []


def test_import_to_fleet_one_failure_does_not_stop_others(kube_fleet, pki: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = kube_fleet(4)
    fleet.emulators["c2"].faults.fail(1000, 503)
    fleet.emulators["c3"].create("namespaces", None, {"metadata": {"name": "istio-system"}})
    fleet.emulators["c3"].create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"x": "eA=="}})
    p = Prepared(cacerts_manifest(pki / "c1"), 1)
    report = import_to_fleet(p, fleet.contexts, parallel=2, kubeconfig=fleet.kubeconfig, policy=FAST, record=p.record)
    assert [(o.context, o.exit_code, o.result) for o in report.outcomes] == [
        ("c1", 0, "created"),
        ("c2", 5, "failed"),
        ("c3", 4, "failed"),
        ("c4", 0, "created"),
    ]
    assert p.recorded == 1 and report.exit_code == 5  # recorded once, after the first cluster that holds it
    for ctx in ("c1", "c4"):
        assert fleet.emulators[ctx].get("secrets", "istio-system", "cacerts") is not None


def test_import_to_fleet_record_failure_is_reported_and_retried(kube_fleet, pki: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = kube_fleet(3)
    p = Prepared(cacerts_manifest(pki / "c1"), 1)
    calls: list[int] = []

    def flaky_record(_prepared: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise InvalidInput("/state: state folder is not writable: Permission denied")
        p.record(_prepared)

    report = import_to_fleet(
        p, fleet.contexts, parallel=1, kubeconfig=fleet.kubeconfig, policy=FAST, record=flaky_record
    )
    first = report.outcomes[0]
    assert (first.context, first.exit_code, first.result) == ("c1", 3, "failed")
    assert first.detail == (
        "context c1: cacerts created in the cluster, but this host's record of accepted bundles was not written: "
        "/state: state folder is not writable: Permission denied"
    )
    assert [o.result for o in report.outcomes[1:]] == ["created", "created"]
    assert len(calls) == 2 and p.recorded == 1  # retried on the next success, then not again
    for emu in fleet.emulators.values():
        assert emu.get("secrets", "istio-system", "cacerts") is not None


def test_import_to_fleet_dry_run_writes_and_records_nothing(kube_fleet, pki: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = kube_fleet(2)
    fleet.emulators["c2"].create("namespaces", None, {"metadata": {"name": "istio-system"}})
    fleet.emulators["c2"].create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"x": "eA=="}})
    p = Prepared(cacerts_manifest(pki / "c1"), 1)
    report = import_to_fleet(
        p, fleet.contexts, dry_run=True, rotate=True, kubeconfig=fleet.kubeconfig, policy=FAST, record=p.record
    )
    assert [(o.context, o.exit_code, o.result) for o in report.outcomes] == [
        ("c1", 0, "would-create"),
        ("c2", 0, "would-rotate"),
    ]
    assert "namespace istio-system would be created" in report.outcomes[0].detail
    assert report.outcomes[1].detail.startswith("backup cacerts-backup-")
    assert p.recorded == 0
    for emu in fleet.emulators.values():  # SelfSubjectAccessReviews are questions, not writes
        assert [r for r in emu.requests if r.method != "GET" and "selfsubjectaccessreviews" not in r.path] == []
    assert fleet.emulators["c1"].get("namespaces", None, "istio-system") is None


@pytest.mark.parametrize(
    ("context", "label", "cluster"),
    [
        ("prod-1", "prod-1", "prod-1"),
        ("gke_proj_us-central1-a_prod", "gke_proj_us-central1-a_prod", "prod"),
        ("arn:aws:eks:us-west-2:123456789012:cluster/web", "arn-aws-eks-us-west-2-123456789012-cluster-web", "web"),
        ("..", None, None),
        ("/", None, None),
        ("a/../../b", "a-b", "a-b"),
        ("x" * 80, None, None),
    ],
)
def test_context_names_become_safe_label_values_and_path_elements(
    context: str, label: str | None, cluster: str | None
) -> None:
    import re

    from airgap.connected.fleet import context_cluster, context_label

    got = context_label(context)
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", got)
    assert got not in (".", "..") and "/" not in got
    if label is not None:
        assert got == label
    if cluster is not None:
        assert context_cluster(context) == cluster
    assert context_label(context) == got  # deterministic
