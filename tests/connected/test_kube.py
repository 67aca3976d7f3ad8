"""airgap.connected.kube against the emulator: contexts, retries, errors, optimistic concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from airgap.connected.kube import AlreadyExists, Kube, NotFound, RetryPolicy, connect, policy_from_env, resolve_context
from airgap.errors import ClusterError, InvalidInput
from tests.connected.kubehelpers import FAST
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster


def _kube(c: Cluster, policy: RetryPolicy = FAST) -> Kube:
    return connect(c.context, kubeconfig=c.kubeconfig, policy=policy)


def test_context_from_kubeconfig_env_and_current(kube_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    path, ctx = resolve_context(None)
    assert path == str(kube_cluster.kubeconfig) and ctx == kube_cluster.context
    with connect(None) as kube:
        assert kube.version()["gitVersion"].startswith("v1.")


def test_unknown_context_and_missing_kubeconfig(kube_cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="context 'nope' not found in kubeconfig"):
        connect("nope", kubeconfig=kube_cluster.kubeconfig)
    with pytest.raises(InvalidInput, match="kubeconfig not found"):
        connect(None, kubeconfig=tmp_path / "missing")
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    doc["current-context"] = ""
    bare = tmp_path / "bare"
    bare.write_text(yaml.safe_dump(doc))
    with pytest.raises(InvalidInput, match="no current context; pass --context"):
        connect(None, kubeconfig=bare)


def test_bad_token_is_a_cluster_error_naming_context(kube_cluster: Cluster, tmp_path: Path) -> None:
    kube_cluster.emu()
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = "wrong"
    kc = tmp_path / "kc-bad"
    kc.write_text(yaml.safe_dump(doc))
    with connect(kube_cluster.context, kubeconfig=kc, policy=FAST) as kube, pytest.raises(ClusterError) as info:
        kube.get("Namespace", "default")
    assert "context test: get namespaces default: 401 Unauthorized" in str(info.value)


def test_wrong_ca_fails_fast_without_retries(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    import trustme

    other = trustme.CA()
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    import base64

    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(other.cert_pem.bytes()).decode()
    kc = tmp_path / "kc-ca"
    kc.write_text(yaml.safe_dump(doc))
    before = len(emu.requests)
    with connect(kube_cluster.context, kubeconfig=kc, policy=FAST) as kube, pytest.raises(ClusterError, match="TLS"):
        kube.version()
    assert len(emu.requests) == before  # the handshake failed: no request reached the server


def test_retries_503_429_and_drops(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    notes: list[str] = []
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST, notify=notes.append) as kube:
        emu.faults.fail(2, 503, path="/version")
        emu.faults.throttle(1, retry_after=0, path="/version")
        emu.faults.drop(1, path="/version")
        assert kube.version()["major"] == "1"
    statuses = [r.status for r in emu.requests_for("GET", "/version")]
    assert statuses == [503, 503, 429, 0, 200]
    assert len(notes) == 4 and all("context test: get server version" in n for n in notes)


def test_gives_up_after_attempts_naming_object(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.faults.fail(100, 503, path="/secrets/cacerts")
    with _kube(kube_cluster) as kube, pytest.raises(ClusterError) as info:
        kube.get("Secret", "cacerts", "istio-system")
    msg = str(info.value)
    assert msg.startswith("context test: get secrets istio-system/cacerts: 503 ServiceUnavailable")
    assert "gave up after 5 attempts" in msg
    assert info.value.exit_code == 5


def test_retry_after_is_honoured(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    slept: list[float] = []
    policy = RetryPolicy(attempts=3, backoff=0.01, max_retry_after=60)
    with _kube(kube_cluster, policy) as kube:
        kube._sleep = slept.append
        emu.faults.throttle(1, retry_after=7, path="/version")
        kube.version()
    assert slept == [7.0]


def test_slow_response_times_out_then_retries(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.faults.slow(1, 1.0, path="/version")
    policy = RetryPolicy(attempts=3, backoff=0.01, read_timeout=0.3)
    notes: list[str] = []
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=policy, notify=notes.append) as kube:
        assert kube.version()["major"] == "1"
    assert len(notes) == 1 and "timed out" in notes[0]


def test_create_errors(kube_cluster: Cluster) -> None:
    with _kube(kube_cluster) as kube:
        kube.create("Namespace", {"metadata": {"name": "airgap-t1"}})
        try:
            with pytest.raises(AlreadyExists, match='namespaces "airgap-t1" already exists'):
                kube.create("Namespace", {"metadata": {"name": "airgap-t1"}})
            with pytest.raises(ClusterError, match="422 Invalid"):
                kube.create("Secret", {"metadata": {"name": "Bad Name"}}, "airgap-t1")
            assert kube.get("Secret", "absent", "airgap-t1") is None
            with pytest.raises(NotFound):
                kube.patch("Secret", "absent", {"metadata": {"labels": {"a": "b"}}}, "airgap-t1")
        finally:
            kube.delete("Namespace", "airgap-t1")


def test_update_rereads_on_conflict(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.create("namespaces", None, {"metadata": {"name": "work", "labels": {"n": "0"}}})

    def racer() -> None:
        emu.patch("namespaces", None, "work", {"metadata": {"labels": {"other": "writer"}}})

    emu.faults.before(racer, method="PUT", path="/namespaces/work")
    calls = []

    def change(ns: dict) -> dict:
        calls.append(dict(ns["metadata"]["labels"]))
        ns["metadata"]["labels"]["n"] = "1"
        return ns

    with _kube(kube_cluster) as kube:
        obj, changed = kube.update("Namespace", "work", change)
    assert changed and obj["metadata"]["labels"]["n"] == "1" and obj["metadata"]["labels"]["other"] == "writer"
    assert len(calls) == 2 and "other" in calls[1]  # re-read after 409, the other writer's label kept
    assert [r.status for r in emu.requests_for("PUT", "/namespaces/work")] == [409, 200]


def test_clients_are_independent_across_threads(kube_cluster: Cluster) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with _kube(kube_cluster) as kube:
                for _ in range(5):
                    kube.list("Namespace")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_KUBE_ATTEMPTS", "2")
    monkeypatch.setenv("AIRGAP_KUBE_BACKOFF", "0.1")
    p = policy_from_env()
    assert p.attempts == 2 and p.backoff == 0.1
    monkeypatch.setenv("AIRGAP_KUBE_BACKOFF", "fast")
    with pytest.raises(InvalidInput, match="AIRGAP_KUBE_BACKOFF='fast': not a number"):
        policy_from_env()


# --- issue 23, fault 20: a failing exec credential plugin ---------------------------------------------------

_PLUGIN = """import json, os, sys
mode = sys.argv[1]
if mode == "fail":
    sys.stderr.write("error: token PLUGIN-SECRET-TOKEN expired; see https://login.example/PLUGIN-SECRET\\n")
    print("PLUGIN-SECRET-STDOUT")
    sys.exit(7)
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["kind"] == "ExecCredential" and info["spec"]["interactive"] is False
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": {"token": sys.argv[2]}}))
"""


def test_fault_20_a_failing_credential_plugin_is_one_line_and_no_request(kube_cluster: Cluster, tmp_path: Path) -> None:
    """The plugin exits 7 after printing a token to stderr: one line naming the context and the exit
    code, nothing of its output anywhere, no request sent. A working plugin's token is used."""
    import sys

    from tests.helpers import one_error_line, run_proc

    emu = kube_cluster.emu()
    plugin = tmp_path / "plugin.py"
    plugin.write_text(_PLUGIN)
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    token = doc["users"][0]["user"].pop("token")
    exec_cfg = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable}
    doc["users"][0]["user"]["exec"] = {**exec_cfg, "args": [str(plugin), "fail"]}
    failing = tmp_path / "kc-failing"
    failing.write_text(yaml.safe_dump(doc))
    before = len(emu.requests)
    r = run_proc("mesh", "status", "--context", "test", env={"KUBECONFIG": str(failing)})
    assert r.code == 5
    assert one_error_line(r.err) == "airgap: error: the credential plugin for context test failed (exit 7)"
    assert "PLUGIN-SECRET" not in r.out + r.err
    assert len(emu.requests) == before  # nothing was sent, with or without credentials
    doc["users"][0]["user"]["exec"] = {**exec_cfg, "args": [str(plugin), "ok", token]}
    working = tmp_path / "kc-working"
    working.write_text(yaml.safe_dump(doc))
    with connect("test", kubeconfig=working, policy=FAST) as kube:
        assert kube.get("Namespace", "default") is not None


def test_several_kubeconfig_files_merge_and_run_the_plugin(kube_cluster: Cluster, tmp_path: Path) -> None:
    """KUBECONFIG=a:b: the client's merge (kubectl's rules), with airgap running the exec plugin."""
    import os
    import sys

    emu = kube_cluster.emu()
    plugin = tmp_path / "plugin.py"
    plugin.write_text(_PLUGIN)
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    token = doc["users"][0]["user"].pop("token")
    doc["users"][0]["user"]["exec"] = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(plugin), "ok", token],
    }
    doc["current-context"] = "test"
    first = tmp_path / "a"
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "contexts": [], "users": []}))
    second = tmp_path / "b"
    second.write_text(yaml.safe_dump(doc))
    with connect("test", kubeconfig=Path(f"{first}{os.pathsep}{second}"), policy=FAST) as kube:
        assert kube.get("Namespace", "default") is not None
    assert emu.requests_for("GET", "/api/v1/namespaces/default")
