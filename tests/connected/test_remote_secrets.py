"""``mesh connect`` and the fleet trust table, against several emulated clusters in one process."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.connected.kube import connect
from airgap.connected.remote_secrets import (
    CLUSTER_ANNOTATION,
    MULTICLUSTER_LABEL,
    READER_SA,
    TOKEN_SECRET,
    context_endpoint,
    fleet_problems,
    read_facts,
)
from tests.connect_fixtures import MESH
from tests.connect_fixtures import connect_env as _env
from tests.connect_fixtures import connect_fleet as _fleet
from tests.connect_fixtures import ctx_args as _ctx_args
from tests.connect_fixtures import prepare_cluster as _prepare
from tests.connect_fixtures import remote_secrets_of as _remote_secrets
from tests.connected.kubehelpers import FAST
from tests.helpers import make_pki, one_error_line, run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Fleet


@pytest.fixture
def other_root(tmp_path: Path) -> Path:
    """A cluster folder under a different root CA (a second Makefile run: istio/istio#37096)."""
    make_pki(tmp_path / "other-pki", ["x1"], cn="Other Root", passphrase=None, key_passphrase=None)
    return tmp_path / "other-pki" / "x1"


def _kubeconfig_of(secret: dict[str, Any]) -> dict[str, Any]:
    (key, raw), *_ = secret["data"].items()
    doc = yaml.safe_load(base64.b64decode(raw))
    assert key == secret["metadata"]["annotations"][CLUSTER_ANNOTATION]
    return doc  # type: ignore[no-any-return]


# -- the whole act ------------------------------------------------------------------------------------


def test_three_clusters_get_six_remote_secrets_that_reach_the_right_servers(
    kube_fleet: Any, pki: Path, tmp_path: Path
) -> None:
    fleet = _fleet(kube_fleet, pki, 3)
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", "--json", env=_env(fleet, tmp_path))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert len(doc["remote_secrets"]) == 6 and {s["action"] for s in doc["remote_secrets"]} == {"created"}
    names = {ctx: f"cluster{i + 1}" for i, ctx in enumerate(fleet.contexts)}
    kubeconfig = yaml.safe_load(fleet.kubeconfig.read_text())
    ca_by_server = {c["cluster"]["server"]: c["cluster"]["certificate-authority-data"] for c in kubeconfig["clusters"]}
    for b in fleet.contexts:
        held = _remote_secrets(fleet.emulators[b])
        others = [a for a in fleet.contexts if a != b]
        assert sorted(held) == sorted(f"istio-remote-secret-{names[a]}" for a in others)
        for a in others:
            secret = held[f"istio-remote-secret-{names[a]}"]
            assert secret["metadata"]["labels"][MULTICLUSTER_LABEL] == "true"
            assert secret["metadata"]["annotations"][CLUSTER_ANNOTATION] == names[a]
            cfg = _kubeconfig_of(secret)
            cluster = cfg["clusters"][0]["cluster"]
            assert cluster["server"] == fleet.emulators[a].url  # A's server, not B's
            assert cluster["certificate-authority-data"] == ca_by_server[cluster["server"]]  # with its CA data
            token = cfg["users"][0]["user"]["token"]
            assert token in fleet.emulators[a].tokens  # a token A's token controller issued to the reader
            assert fleet.emulators[a].tokens[token] == f"system:serviceaccount:istio-system:{READER_SA}"
    for a in fleet.contexts:  # the reader exists in every cluster
        emu = fleet.emulators[a]
        assert emu.get("serviceaccounts", "istio-system", READER_SA) is not None
        assert emu.list("clusterroles") and emu.list("clusterrolebindings")
        assert emu.get("secrets", "istio-system", TOKEN_SECRET)["type"] == "kubernetes.io/service-account-token"


def test_a_remote_secret_works_as_a_kubeconfig_that_reads_the_other_cluster(
    kube_fleet: Any, pki: Path, tmp_path: Path
) -> None:
    """What B's istiod does with the secret: use it to read A's API (and only read)."""
    fleet = _fleet(kube_fleet, pki, 2)
    _a, b = fleet.contexts
    assert run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", env=_env(fleet, tmp_path)).code == 0
    secret = _remote_secrets(fleet.emulators[b])["istio-remote-secret-cluster1"]
    path = tmp_path / "remote-kubeconfig"
    path.write_bytes(base64.b64decode(secret["data"]["cluster1"]))
    with connect(None, kubeconfig=path, policy=FAST) as kube:
        ns = kube.get("Namespace", "istio-system")
        assert ns is not None and ns["metadata"]["annotations"]["airgap.dev/cluster-name"] == "cluster1"
        from airgap.errors import ClusterError

        with pytest.raises(ClusterError, match="403"):
            kube.create("Namespace", {"metadata": {"name": "evil"}})


def test_rerun_is_idempotent_and_a_changed_server_is_updated_in_place(
    kube_fleet: Any, pki: Path, tmp_path: Path
) -> None:
    fleet = _fleet(kube_fleet, pki, 3)
    env = _env(fleet, tmp_path)
    args = ("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", "--json")
    assert run_cli(*args, env=env).code == 0

    def count_writes() -> int:  # SelfSubjectAccessReviews are questions (asked first, issue 23), not writes
        reqs = [q for e in fleet.emulators.values() for m in ("POST", "PUT") for q in e.requests_for(m, "")]
        return len([q for q in reqs if "selfsubjectaccessreviews" not in q.path])

    writes = count_writes()
    r = run_cli(*args, env=env)
    assert r.code == 0, r.err
    assert {s["action"] for s in json.loads(r.out)["remote_secrets"]} == {"unchanged"}
    assert count_writes() == writes  # a re-run writes nothing
    # someone edited c2's copy of cluster1's secret to point elsewhere: a re-run puts it back
    c2 = fleet.emulators[fleet.contexts[1]]
    secret = c2.get("secrets", "istio-system", "istio-remote-secret-cluster1")
    assert secret is not None
    cfg = _kubeconfig_of(secret)
    cfg["clusters"][0]["cluster"]["server"] = "https://stale.example:6443"
    c2.patch(
        "secrets",
        "istio-system",
        secret["metadata"]["name"],
        {"data": {"cluster1": base64.b64encode(yaml.safe_dump(cfg).encode()).decode()}},
    )
    r = run_cli(*args, env=env)
    assert r.code == 0, r.err
    actions = {(s["in"], s["for"]): s["action"] for s in json.loads(r.out)["remote_secrets"]}
    assert actions.pop((fleet.contexts[1], "cluster1")) == "updated"
    assert set(actions.values()) == {"unchanged"}
    fixed = c2.get("secrets", "istio-system", "istio-remote-secret-cluster1")
    assert (
        fixed is not None
        and _kubeconfig_of(fixed)["clusters"][0]["cluster"]["server"] == fleet.emulators[fleet.contexts[0]].url
    )


def test_dry_run_reads_only(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    fleet = _fleet(kube_fleet, pki, 2)
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--dry-run", env=_env(fleet, tmp_path))
    assert r.code == 0, r.err
    assert "would create" in r.out
    for emu in fleet.emulators.values():
        assert not [q for q in emu.requests if q.method not in ("GET",)]
        assert not _remote_secrets(emu)


# -- refusals: nothing written in any cluster ----------------------------------------------------------


def _writes(fleet: Fleet) -> list[Any]:
    return [q for e in fleet.emulators.values() for q in e.requests if q.method != "GET"]


def test_a_fourth_cluster_with_another_root_is_refused_with_nothing_written(
    kube_fleet: Any, pki: Path, other_root: Path, tmp_path: Path
) -> None:
    fleet: Fleet = kube_fleet(4)
    for i, ctx in enumerate(fleet.contexts[:3]):
        _prepare(fleet.emulators[ctx], f"cluster{i + 1}", pki / "c1")
    _prepare(fleet.emulators[fleet.contexts[3]], "cluster4", other_root)
    before = len(_writes(fleet))
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), env=_env(fleet, tmp_path))
    assert r.code == 4
    line = one_error_line(r, "share no root", fleet.contexts[3], "nothing was written", alone=False)
    from airgap.core.x509 import fingerprint, load_cert_pem

    assert fingerprint(load_cert_pem((other_root / "root-cert.pem").read_bytes(), source="t")) in line
    assert len(_writes(fleet)) == before
    for emu in fleet.emulators.values():
        assert emu.get("serviceaccounts", "istio-system", READER_SA) is None and not _remote_secrets(emu)


def test_a_context_without_ca_data_is_refused(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    fleet = _fleet(kube_fleet, pki, 2)
    doc = yaml.safe_load(fleet.kubeconfig.read_text())
    doc["clusters"][1]["cluster"].pop("certificate-authority-data")
    doc["clusters"][1]["cluster"]["insecure-skip-tls-verify"] = True
    fleet.kubeconfig.write_text(yaml.safe_dump(doc))
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), env=_env(fleet, tmp_path))
    assert r.code == 4
    one_error_line(r, fleet.contexts[1], "insecure-skip-tls-verify")
    del doc["clusters"][1]["cluster"]["insecure-skip-tls-verify"]
    fleet.kubeconfig.write_text(yaml.safe_dump(doc))
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), env=_env(fleet, tmp_path))
    assert r.code == 4
    one_error_line(r, fleet.contexts[1], "no CA data")
    assert not _writes(fleet)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("mesh", "different meshes"),
        ("name", "is used by several contexts"),
        ("network", "has no topology.istio.io/network label"),
        ("unnamed", "no clusterName recorded"),
        ("uppercase", "cannot name a remote secret"),
    ],
)
def test_fleet_that_cannot_be_one_mesh_is_refused(
    kube_fleet: Any, pki: Path, tmp_path: Path, change: str, needle: str
) -> None:
    fleet: Fleet = kube_fleet(2)
    a, b = (fleet.emulators[c] for c in fleet.contexts)
    _prepare(a, "cluster1", pki / "c1")
    _prepare(
        b, "cluster1" if change == "name" else "cluster2", pki / "c2", mesh_id="other" if change == "mesh" else MESH
    )
    if change == "network":
        b.patch("namespaces", None, "istio-system", {"metadata": {"labels": {"topology.istio.io/network": None}}})
    if change == "uppercase":  # a valid label value, but not a valid Secret name: refused before any write
        b.patch(
            "namespaces", None, "istio-system", {"metadata": {"annotations": {"airgap.dev/cluster-name": "West_1"}}}
        )
    if change == "unnamed":
        b.patch("namespaces", None, "istio-system", {"metadata": {"annotations": {"airgap.dev/cluster-name": None}}})
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), env=_env(fleet, tmp_path))
    assert r.code == 4, r.err
    one_error_line(r, needle)
    assert not _writes(fleet)


def test_cluster_name_mapping_names_an_unrecorded_cluster(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    fleet: Fleet = kube_fleet(2)
    a, b = (fleet.emulators[c] for c in fleet.contexts)
    _prepare(a, "cluster1", pki / "c1")
    _prepare(b, "cluster2", pki / "c2")
    b.patch("namespaces", None, "istio-system", {"metadata": {"annotations": {"airgap.dev/cluster-name": None}}})
    args = ("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02")
    r = run_cli(*args, "--cluster-name", f"{fleet.contexts[1]}=west", env=_env(fleet, tmp_path))
    assert r.code == 0, r.err
    assert "istio-remote-secret-west" in _remote_secrets(a)
    r = run_cli(*args, "--cluster-name", f"{fleet.contexts[0]}=other", env=_env(fleet, tmp_path))
    assert r.code == 4
    one_error_line(r, "mesh install recorded 'cluster1'")
    r = run_cli(*args, "--cluster-name", "no-equals-sign", env=_env(fleet, tmp_path))
    assert r.code == 3
    one_error_line(r, "expected CONTEXT=NAME")


def test_one_context_is_a_usage_error(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    fleet = _fleet(kube_fleet, pki, 2)
    r = run_cli("mesh", "connect", "--context", fleet.contexts[0], env=_env(fleet, tmp_path))
    assert r.code == 3
    one_error_line(r, "at least two")


# -- output-dir ------------------------------------------------------------------------------------------


def test_output_dir_needs_existing_tokens_then_renders_deterministically(
    kube_fleet: Any, pki: Path, tmp_path: Path
) -> None:
    fleet = _fleet(kube_fleet, pki, 2)
    env = _env(fleet, tmp_path)
    out = tmp_path / "out"
    args = ("mesh", "connect", *_ctx_args(fleet.contexts), "--output-dir", out)
    r = run_cli(*args, env=env)
    assert r.code == 2 and "--plaintext-secrets" in r.err  # tokens are secrets: explicit consent
    r = run_cli(*args, "--plaintext-secrets", env=env)
    assert r.code == 4
    one_error_line(r, "no reader token yet")
    assert not out.exists() and not _writes(fleet)
    assert run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", env=env).code == 0
    r = run_cli(*args, "--plaintext-secrets", env=env)
    assert r.code == 0, r.err
    files = tree(out)
    for ctx in fleet.contexts:
        assert f"clusters/{ctx}/kustomization.yaml" in files
    first = {p: (out / p).read_bytes() for p in files if (out / p).is_file()}
    secret_file = out / "clusters" / fleet.contexts[1] / "50-istio-remote-secret-cluster1.yaml"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    rendered = yaml.safe_load(secret_file.read_text())
    live = _remote_secrets(fleet.emulators[fleet.contexts[1]])["istio-remote-secret-cluster1"]
    assert rendered["data"] == live["data"]  # the same kubeconfig the live connect applied
    assert rendered["metadata"]["labels"] == {MULTICLUSTER_LABEL: "true"}
    kust = yaml.safe_load((out / "clusters" / fleet.contexts[1] / "kustomization.yaml").read_text())
    assert kust["resources"] == [
        "40-istio-reader.yaml",
        "41-istio-reader-token.yaml",
        "50-istio-remote-secret-cluster1.yaml",
    ]
    r = run_cli(*args, "--plaintext-secrets", env=env)  # a re-render of unchanged clusters: no diff
    assert r.code == 0, r.err
    assert {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()} == first
    fleet.emulators[fleet.contexts[0]].delete("secrets", "istio-system", TOKEN_SECRET)  # token rotated
    assert run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", env=env).code == 0
    r = run_cli(*args, "--plaintext-secrets", env=env)
    assert r.code == 4  # a changed remote secret is never replaced silently
    one_error_line(r, "50-istio-remote-secret-cluster1.yaml", "refusing to overwrite", alone=False)
    assert (secret_file.read_bytes()) == first[str(secret_file.relative_to(out))]
    r = run_cli(*args, "--plaintext-secrets", "--force", env=env)
    assert r.code == 0, r.err
    live = _remote_secrets(fleet.emulators[fleet.contexts[1]])["istio-remote-secret-cluster1"]
    assert yaml.safe_load(secret_file.read_text())["data"] == live["data"]


def test_output_dir_refuses_a_context_that_is_not_a_folder_name(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    fleet = _fleet(kube_fleet, pki, 2)
    env = _env(fleet, tmp_path)
    assert run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", env=env).code == 0
    doc = yaml.safe_load(fleet.kubeconfig.read_text())
    for entry in doc["contexts"]:
        if entry["name"] == fleet.contexts[1]:
            entry["name"] = "../escape"
    fleet.kubeconfig.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    r = run_cli(
        "mesh", "connect", "--context", fleet.contexts[0], "--context", "../escape",
        "--output-dir", out, "--plaintext-secrets", env=env,
    )  # fmt: skip
    assert r.code == 3
    one_error_line(r, "../escape", "not usable as a cluster folder name")
    assert tree(out) == [] and not (tmp_path / "escape").exists()


# -- the fleet trust table -----------------------------------------------------------------------------


def test_fleet_status_prints_the_trust_table_and_fails_until_connected(
    kube_fleet: Any, pki: Path, tmp_path: Path
) -> None:
    fleet = _fleet(kube_fleet, pki, 3)
    for emu in fleet.emulators.values():
        emu.simulate_istio_install("asm-186-8")
        emu.wait_idle()
    env = _env(fleet, tmp_path)
    r = run_cli("mesh", "status", *_ctx_args(fleet.contexts), "--json", env=env)
    assert r.code == 1
    trust = json.loads(r.out)["trust"]
    assert not trust["ok"] and any("no remote secret for cluster cluster2" in p for p in trust["problems"])
    assert run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", env=env).code == 0
    r = run_cli("mesh", "status", *_ctx_args(fleet.contexts), "--json", env=env)
    assert r.code == 0, r.err
    trust = json.loads(r.out)["trust"]
    assert trust["ok"]
    row = trust["clusters"][0]
    assert row["cluster_name"] == "cluster1" and row["mesh_id"] == MESH and row["network"] == "net-cluster1"
    assert len(row["roots"]) == 1 and len(row["roots"][0]) == 64
    assert {n: v["known"] for n, v in row["remote_secrets"].items()} == {
        "istio-remote-secret-cluster2": True,
        "istio-remote-secret-cluster3": True,
    }
    r = run_cli("mesh", "status", *_ctx_args(fleet.contexts), env=env)
    assert r.code == 0
    assert "mesh trust:" in r.out and "cluster2, cluster3" in r.out


def test_fleet_problems_is_pairwise_on_roots(kube_fleet: Any, pki: Path, other_root: Path) -> None:
    """A {R1}, B {R1, R2}, C {R2}: every cluster shares a root with B, but A and C share none."""
    fleet: Fleet = kube_fleet(3)
    a, b, c = (fleet.emulators[x] for x in fleet.contexts)
    _prepare(a, "cluster1", pki / "c1")
    _prepare(c, "cluster3", other_root)
    _prepare(b, "cluster2", pki / "c2")
    both = (pki / "root-cert.pem").read_bytes() + (other_root / "root-cert.pem").read_bytes()
    b.patch("secrets", "istio-system", "cacerts", {"data": {"root-cert.pem": base64.b64encode(both).decode()}})
    facts = []
    for ctx in fleet.contexts:
        with connect(ctx, kubeconfig=fleet.kubeconfig, policy=FAST) as kube:
            facts.append(read_facts(kube, context_endpoint(ctx, fleet.kubeconfig)))
    problems = fleet_problems(facts)
    assert len(problems) == 1 and fleet.contexts[0] in problems[0] and fleet.contexts[2] in problems[0]


def test_a_rotated_reader_token_is_carried_to_every_other_cluster(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    fleet = _fleet(kube_fleet, pki, 3)
    env = _env(fleet, tmp_path)
    args = ("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", "--json")
    assert run_cli(*args, env=env).code == 0
    c1 = fleet.emulators[fleet.contexts[0]]
    old = c1.get("secrets", "istio-system", TOKEN_SECRET)
    assert old is not None
    c1.delete("secrets", "istio-system", TOKEN_SECRET)  # the operator revoked the reader's token
    r = run_cli(*args, env=env)
    assert r.code == 0, r.err
    actions = {(s["in"], s["for"]): s["action"] for s in json.loads(r.out)["remote_secrets"]}
    assert {a for (_b, name), a in actions.items() if name == "cluster1"} == {"updated"}
    assert {a for (_b, name), a in actions.items() if name != "cluster1"} == {"unchanged"}
    new = c1.get("secrets", "istio-system", TOKEN_SECRET)
    assert new is not None and new["data"]["token"] != old["data"]["token"]
    for b in fleet.contexts[1:]:
        cfg = _kubeconfig_of(_remote_secrets(fleet.emulators[b])["istio-remote-secret-cluster1"])
        assert cfg["users"][0]["user"]["token"] == base64.b64decode(new["data"]["token"]).decode()


# -- issue 23, fault 22: mesh connect names a stray remote secret ---------------------------------------------


def test_fault_22_mesh_connect_names_a_stray_remote_secret(kube_fleet: Any, pki: Path, tmp_path: Path) -> None:
    """A remote secret for a cluster outside the mesh, at a server no context knows and without TLS checks:
    mesh connect names it (and leaves it: it is not ours); the fleet's mesh status reports it as a problem."""
    fleet = _fleet(kube_fleet, pki, 2)
    ghost = {
        "clusters": [
            {"name": "g", "cluster": {"server": "https://203.0.113.9:6443", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "g", "user": {"token": "t"}}],
        "contexts": [{"name": "g", "context": {"cluster": "g", "user": "g"}}],
    }
    stray = {
        "metadata": {"name": "istio-remote-secret-ghost", "labels": {MULTICLUSTER_LABEL: "true"}},
        "data": {"ghost": base64.b64encode(yaml.safe_dump(ghost).encode()).decode()},
    }
    c1 = fleet.contexts[0]
    fleet.emulators[c1].create("secrets", "istio-system", stray)
    env = _env(fleet, tmp_path)
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), "--poll", "0.02", "--json", env=env)
    assert r.code == 0, r.err
    named = [
        f"context {c1}: remote secret istio-remote-secret-ghost is for cluster 'ghost', which is not in this mesh",
        f"context {c1}: remote secret istio-remote-secret-ghost points at https://203.0.113.9:6443, a server no "
        "context of the kubeconfig knows",
        f"context {c1}: remote secret istio-remote-secret-ghost skips TLS verification (insecure-skip-tls-verify)",
    ]
    assert json.loads(r.out)["stray_remote_secrets"] == named
    assert [line for line in r.err.splitlines() if "ghost" in line] == [f"warning: {n}" for n in named]
    assert "istio-remote-secret-ghost" in _remote_secrets(fleet.emulators[c1])  # named, not deleted
    r = run_cli("mesh", "status", *_ctx_args(fleet.contexts), "--json", env=env)
    doc = json.loads(r.out)
    assert named[0] in doc["trust"]["problems"]


def test_clusters_that_share_a_root_but_would_reject_each_other_are_refused(
    kube_fleet: Any, pki: Path, other_root: Path, tmp_path: Path
) -> None:
    """Found by the trust work: connect checked only for a shared root. cluster2 issues under B and
    trusts {A, B}; cluster1 trusts only A, so it rejects cluster2's workloads: the invariant says no."""
    fleet: Fleet = kube_fleet(2)
    split = tmp_path / "split"
    split.mkdir()
    for name in ("ca-cert.pem", "ca-key.pem", "cert-chain.pem"):
        (split / name).write_bytes((other_root / name).read_bytes())
    both = (pki / "root-cert.pem").read_bytes() + (other_root / "root-cert.pem").read_bytes()
    (split / "root-cert.pem").write_bytes(both)
    _prepare(fleet.emulators[fleet.contexts[0]], "cluster1", pki / "c1")
    _prepare(fleet.emulators[fleet.contexts[1]], "cluster2", split)
    before = len(_writes(fleet))
    r = run_cli("mesh", "connect", *_ctx_args(fleet.contexts), env=_env(fleet, tmp_path))
    assert r.code == 4, r.err
    one_error_line(r, "would reject each other", fleet.contexts[0], "nothing was written", alone=False)
    assert len(_writes(fleet)) == before
