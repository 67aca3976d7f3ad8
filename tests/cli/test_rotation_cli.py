"""A fleet's root rotation through the gate: ``mesh trust``, ``mesh trust --plan`` and ``bundle
import --rotate`` against three clusters (the Kubernetes API emulator, or real clusters).

Three clusters (contexts c1..c3 holding PKI clusters cluster1..3) start under root A, joined by
``mesh connect`` (so the gate finds its peers through the remote secrets). The full rotation to
root B is driven by the plan: each step's commands are run as printed (placeholders filled in),
and after every step ``mesh trust`` exits 0. Out-of-order imports are refused with ``cacerts``
byte-identical, no backup Secret and no record; a split made by hand with the real kubectl is
detected.

Real clusters: ``AIRGAP_TEST_KUBECONFIG`` and ``AIRGAP_TEST_CONTEXTS`` (three contexts, comma
separated, scratch clusters with the mesh installed at revision ``AIRGAP_TEST_REVISION``; they are
aliased c1..c3 in a copy of the kubeconfig); the emulator-only parts (the istiod stand-in's delay)
skip themselves there.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airgap.connected.kube import Kube, connect
from airgap.core.history import read_events
from tests.bundle_fixtures import Keys, new_keys
from tests.conftest import PASSPHRASE, made_at_now
from tests.connected.kubehelpers import FAST, FAST_ENV
from tests.helpers import Result, make_pki, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import REAL_KUBECONFIG
from tests.kubeapi.server import Emulator

REVISION = os.environ.get("AIRGAP_TEST_REVISION") or "asm-186-8"
NAMES = {"c1": "cluster1", "c2": "cluster2", "c3": "cluster3"}
APP_NS = "shop"


@pytest.fixture(scope="module")
def _module_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys, Path]:
    """One P-256 PKI (root A; cluster1..3) and keys for the module; tests copy it."""
    base = tmp_path_factory.mktemp("rotation")
    with made_at_now():
        make_pki(base / "pki", list(NAMES.values()), passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    passfile = base / "pass.txt"
    passfile.write_bytes(PASSPHRASE + b"\n")
    return base / "pki", new_keys(base / "keys"), passfile


@dataclass
class World:
    pki: Path
    keys: Keys
    passfile: Path
    kubeconfig: Path
    contexts: dict[str, str]  # context -> PKI cluster
    emulators: dict[str, Emulator]
    state: Path
    work: Path

    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), **FAST_ENV, "AIRGAP_STATE_DIR": str(self.state)}

    def kube(self, ctx: str) -> Kube:
        return connect(ctx, kubeconfig=self.kubeconfig, policy=FAST)

    def cli(self, *args: str | Path) -> Result:
        return run_cli(*args, env=self.env)

    def ctx_args(self) -> list[str]:
        return [a for c in self.contexts for a in ("--context", c)]

    def bundle(self, cluster: str, name: str) -> Path:
        out = self.work / name
        r = self.cli(
            "bundle", "create", cluster, "--dir", self.pki, "--sign-key", self.keys.signer,
            "--recipient", self.keys.recipient_pub, "--passphrase-file", self.passfile, "--out", out,
        )  # fmt: skip
        assert r.code == 0, r.err
        return out

    def import_(self, bundle: Path, ctx: str, *extra: str) -> Result:
        return self.cli(
            "bundle", "import", bundle, "--trust", self.keys.signer_pub, "--identity", self.keys.identity,
            "--cluster", self.contexts[ctx], "--context", ctx, "--poll", "0.05", "--trust-wait", "10", *extra,
        )  # fmt: skip

    def cacerts(self, ctx: str) -> dict[str, Any]:
        with self.kube(ctx) as k:
            s = k.get("Secret", "cacerts", "istio-system")
        assert s is not None
        return s

    def backups(self, ctx: str) -> list[str]:
        with self.kube(ctx) as k:
            return [s["metadata"]["name"] for s in k.list("Secret", "istio-system", selector="airgap.dev/backup-of")]

    def trust(self) -> Result:
        return self.cli("mesh", "trust", *self.ctx_args(), "--json")


def _setup_cluster(w: World, ctx: str, emu: Emulator | None) -> None:
    """What mesh install leaves (network, clusterName, meshID; istiod) and an injected workload."""
    with w.kube(ctx) as k:
        if k.get("Namespace", "istio-system") is None:
            k.create("Namespace", {"metadata": {"name": "istio-system"}})
        meta = {
            "labels": {"topology.istio.io/network": f"net-{ctx}"},
            "annotations": {"airgap.dev/cluster-name": w.contexts[ctx], "airgap.dev/mesh-id": "mesh-1"},
        }
        k.patch("Namespace", "istio-system", {"metadata": meta})
        if k.get("Namespace", APP_NS) is None:
            k.create("Namespace", {"metadata": {"name": APP_NS, "labels": {"istio.io/rev": REVISION}}})
    if emu is not None:
        emu.root_publish_delay = 0.1  # the istiod stand-in (tests/kubeapi/README.md)
        emu.simulate_istio_install(REVISION)
        emu.add_deployment(APP_NS, "web", {"app": "web"})
        emu.wait_idle()


def _alias_kubeconfig(real: Path, contexts: list[str], out: Path) -> Path:  # pragma: no cover - real clusters
    """The real kubeconfig with its three contexts also named c1, c2, c3 (file paths made absolute)."""
    import yaml

    doc = yaml.safe_load(real.read_text())
    base = real.resolve().parent
    for section, keys in (("clusters", ("certificate-authority",)), ("users", ("client-certificate", "client-key"))):
        for entry in doc.get(section) or []:
            body = entry.get(section[:-1]) or {}
            for k in keys:
                if isinstance(body.get(k), str) and not Path(body[k]).is_absolute():
                    body[k] = str(base / body[k])
    by_name = {c["name"]: c for c in doc.get("contexts") or []}
    aliases = [{"name": a, "context": dict(by_name[n]["context"])} for a, n in zip(NAMES, contexts, strict=True)]
    doc["contexts"] = aliases + list(doc.get("contexts") or [])  # first: remote secrets' servers map to c1..c3
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out


@pytest.fixture
def world(_module_pki: tuple[Path, Keys, Path], request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    pki_src, keys, passfile = _module_pki
    pki = tmp_path / "pki"
    shutil.copytree(pki_src, pki)
    work = tmp_path / "work"
    work.mkdir()
    if REAL_KUBECONFIG:  # pragma: no cover - needs three real clusters
        ctxs = (os.environ.get("AIRGAP_TEST_CONTEXTS") or "").split(",")
        if len(ctxs) != 3:
            pytest.skip("set AIRGAP_TEST_CONTEXTS to three contexts for the rotation tests")
        contexts, emus = dict(NAMES), {}
        kubeconfig = _alias_kubeconfig(Path(REAL_KUBECONFIG), ctxs, tmp_path / "kubeconfig")
    else:
        fleet = request.getfixturevalue("kube_fleet")(3)  # the emulator only: asked for here, not on real clusters
        contexts, emus, kubeconfig = dict(NAMES), fleet.emulators, fleet.kubeconfig
    w = World(pki, keys, passfile, kubeconfig, contexts, emus, tmp_path / "state", work)
    for ctx in contexts:
        _setup_cluster(w, ctx, emus.get(ctx))
        r = w.import_(w.bundle(contexts[ctx], f"{ctx}-initial.bundle"), ctx)
        assert r.code == 0, r.err
    r = w.cli("mesh", "connect", *w.ctx_args(), "--poll", "0.02")
    assert r.code == 0, r.err
    yield w


def _fill(w: World, command: str) -> list[str]:
    """A command of the plan with its placeholders filled in, as argv for run_cli."""
    words = shlex.split(command)
    assert words[0] == "airgap", command
    fill = {
        "OFFICER.key": str(w.keys.signer),
        "OFFICER.pub": str(w.keys.signer_pub),
        "JUMP.pub": str(w.keys.recipient_pub),
        "JUMP.key": str(w.keys.identity),
        "PASSFILE": str(w.passfile),
    }
    argv = [fill.get(x, x) for x in words[1:]]
    argv = [str(w.work / x) if x.endswith(".bundle") else x for x in argv]
    if argv[:2] == ["bundle", "import"]:
        argv += ["--poll", "0.05", "--trust-wait", "10"]
    if argv[:2] == ["mesh", "inject"]:
        argv += ["--poll", "0.05", "--wait-timeout", "30"]
    if argv[:2] == ["ca", "rotate-root"] and "--finish" not in argv:
        argv += ["--key-type", "ecdsa-p256"]  # the test's speed; the default is rsa-4096
    return argv


def _plan(w: World) -> dict[str, Any]:
    r = w.cli("mesh", "trust", *w.ctx_args(), "--plan", w.pki, "--json")
    assert r.code == 0, r.out + r.err
    doc: dict[str, Any] = json.loads(r.out)
    return doc


def _root(pki: Path) -> str:
    from airgap.core.x509 import fingerprint, load_cert_pem

    return fingerprint(load_cert_pem((pki / "root-cert.pem").read_bytes(), source="root"))


def test_a_full_rotation_driven_by_the_plan_keeps_the_mesh_whole(world: World) -> None:
    w = world
    root_a = _root(w.pki)
    first = _plan(w)
    assert [s["action"] for s in first["plan"]["steps"]] == ["rotate-root"]
    assert {c["phase"] for c in first["clusters"]} == {"A/{A}"}
    done: list[str] = []
    restarts = istiod_restarts = 0
    for _ in range(60):
        steps = _plan(w)["plan"]["steps"]
        if done and steps[0]["action"] == "rotate-root":
            break
        step = steps[0]
        restarts += sum(1 for c in step["commands"] if c.startswith("airgap mesh inject shop --context"))
        for command in step["commands"]:
            if command.startswith("kubectl "):  # the istiod restart: the real kubectl
                argv = shlex.split(command)
                p = subprocess.run(argv, env={**os.environ, **w.env}, capture_output=True, text=True, timeout=60)
                assert p.returncode == 0, f"{command}\n{p.stdout}{p.stderr}"
                istiod_restarts += 1
                continue
            r = w.cli(*_fill(w, command))
            assert r.code == 0, f"{command}\n{r.out}{r.err}"
        done.append(f"{step['stage']}:{step['action']}:{step['context']}")
        r = w.trust()
        assert r.code == 0, f"after {done[-1]}: {r.out}{r.err}"
    else:
        pytest.fail(f"the plan did not converge: {done}")
    root_b = _root(w.pki)
    assert root_b != root_a
    doc = json.loads(w.trust().out)
    assert doc["whole"] and {c["issuing_root"] for c in doc["clusters"]} == {root_b}
    assert {tuple(c["trusted_roots"]) for c in doc["clusters"]} == {(root_b,)}
    # the order the plan gave: trust everywhere, then issuers, then finish, then drop A
    stages = [int(d.split(":")[0]) for d in done]
    assert stages == sorted(stages) and stages[0] == 1
    assert done[0] == "1:rotate-root:None"
    assert sum(1 for d in done if d.startswith("2:ca-rotate")) == 3
    assert sum(1 for d in done if ":bundle:" in d) == 9, done
    assert restarts == 9 and istiod_restarts == 9  # ASM 1.8: istiod and workloads restart after each import
    assert [d for d in done if d.startswith("3:")] == ["3:finish:None"]
    events = [e for e in read_events(w.state).events if e["kind"] == "bundle-import"]
    assert len(events) == 3 + 9 and all(e["forced_split"] is None for e in events)
    assert set(events[0]) == {
        "kind", "time", "cluster", "context", "bundle_id", "sequence", "signer", "ceremony_head",
        "ca_fingerprint", "forced_split",
    }  # fmt: skip


def _start_rotation(w: World) -> None:
    r = w.cli("ca", "rotate-root", "--dir", w.pki, "--passphrase-file", w.passfile, "--key-type", "ecdsa-p256")
    assert r.code == 0, r.err


def _rotate(w: World, cluster: str) -> None:
    assert w.cli("ca", "rotate", cluster, "--dir", w.pki, "--passphrase-file", w.passfile).code == 0


def _accepted(w: World) -> bytes:
    return (w.state / "accepted.json").read_bytes()


def test_a_new_root_issuer_while_a_peer_trusts_only_the_old_root_is_refused(world: World) -> None:
    w = world
    _start_rotation(w)
    for ctx in ("c1", "c3"):  # c2 keeps trust {A}
        assert w.import_(w.bundle(w.contexts[ctx], f"{ctx}-ab.bundle"), ctx, "--rotate").code == 0
    lower = w.bundle("cluster1", "c1-ab-again.bundle")  # made before the refused one: a lower sequence
    _rotate(w, "cluster1")
    ahead = w.bundle("cluster1", "c1-b.bundle")
    before, accepted, history = w.cacerts("c1"), _accepted(w), read_events(w.state).events
    backups = w.backups("c1")
    r = w.import_(ahead, "c1", "--rotate")  # peers from c1's remote secrets: c2 and c3
    assert r.code == 4, r.out + r.err
    assert "blocking: c2 in phase A/{A}" in r.err and "c1 and c2 would reject each other" in r.err
    assert "import into c2 a bundle whose root-cert.pem holds root" in r.err
    after = w.cacerts("c1")
    assert (
        after["data"] == before["data"]
        and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    )
    assert w.backups("c1") == backups and _accepted(w) == accepted and read_events(w.state).events == history
    # not recorded as accepted: the older bundle made before it still goes in
    r = w.import_(lower, "c1", "--rotate")
    assert r.code == 0, r.err
    # --dry-run says the same, and changes nothing
    r = w.import_(ahead, "c1", "--rotate", "--dry-run")
    assert r.code == 4 and "would reject each other" in r.err
    # --force-split is the only way past; the reason is in the history
    r = w.import_(ahead, "c1", "--rotate", "--force-split", "drill: c2 is being decommissioned")
    assert r.code == 0, r.err
    last = read_events(w.state).events[-1]
    assert last["forced_split"] == "drill: c2 is being decommissioned" and last["context"] == "c1"
    assert w.trust().code == 1


def test_trust_without_the_old_root_while_a_peer_still_issues_under_it_is_refused(world: World) -> None:
    w = world
    _start_rotation(w)
    for ctx in w.contexts:
        assert w.import_(w.bundle(w.contexts[ctx], f"{ctx}-ab.bundle"), ctx, "--rotate").code == 0
    for ctx in w.contexts:
        _rotate(w, w.contexts[ctx])
    for ctx in ("c1", "c2"):  # c3 still issues under A
        r = w.import_(w.bundle(w.contexts[ctx], f"{ctx}-b.bundle"), ctx, "--rotate")
        assert r.code == 0, r.err
    r = w.cli("ca", "rotate-root", "--dir", w.pki, "--finish", "--passphrase-file", w.passfile)
    assert r.code == 0, r.err  # the PKI allows it (every folder is under B); the live fleet does not
    before = w.cacerts("c1")
    r = w.import_(w.bundle("cluster1", "c1-only-b.bundle"), "c1", "--peer", "c3", "--rotate")
    assert r.code == 4
    assert "blocking: c3 in phase A/{A,B}" in r.err and "c1 and c3 would reject each other" in r.err
    assert w.cacerts("c1")["data"] == before["data"]
    plan = _plan(w)["plan"]["steps"]
    assert plan[0]["action"] == "bundle" and plan[0]["context"] == "c3"  # c3's issuer moves first


def test_the_gate_waits_for_istiod_to_publish_the_new_root_then_refuses(world: World) -> None:
    w = world
    emu = w.emulators.get("c2")
    if emu is None:
        pytest.skip("needs the emulator's istiod stand-in")
    emu.root_publish_delay = None  # c2's istiod stops publishing: its shop namespace keeps trust {A}
    _start_rotation(w)
    for ctx in w.contexts:
        assert w.import_(w.bundle(w.contexts[ctx], f"{ctx}-ab.bundle"), ctx, "--rotate").code == 0
    _rotate(w, "cluster1")
    bundle = w.bundle("cluster1", "c1-b.bundle")
    before = w.cacerts("c1")
    r = w.cli(
        "bundle", "import", bundle, "--trust", w.keys.signer_pub, "--identity", w.keys.identity,
        "--cluster", "cluster1", "--context", "c1", "--rotate", "--poll", "0.05", "--trust-wait", "0.3",
    )  # fmt: skip
    assert r.code == 4, r.err
    assert "not yet in the proxies' trust" in r.err and "context c2: namespace(s) shop" in r.err
    assert w.cacerts("c1")["data"] == before["data"]
    emu.root_publish_delay = 0.05  # istiod publishes again: the same import passes the wait
    assert w.import_(bundle, "c1", "--rotate").code == 0


def test_a_split_made_by_hand_with_kubectl_is_detected(world: World, tmp_path: Path) -> None:
    w = world
    other = tmp_path / "other"
    make_pki(other, ["x"], passphrase=None, key_passphrase=None, cn="Other Root")
    patch = {"data": {"root-cert.pem": base64.b64encode((other / "root-cert.pem").read_bytes()).decode()}}
    subprocess.run(
        ["kubectl", "--kubeconfig", str(w.kubeconfig), "--context", "c2", "-n", "istio-system", "patch", "secret",
         "cacerts", "--type", "merge", "-p", json.dumps(patch)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    writes = {c: len([q for q in e.requests if q.method != "GET"]) for c, e in w.emulators.items()}
    r = w.cli("mesh", "trust", *w.ctx_args())
    assert r.code == 1
    pki_before = sorted((str(p), p.stat().st_mtime_ns) for p in w.pki.rglob("*"))
    assert w.cli("mesh", "trust", *w.ctx_args(), "--plan", w.pki, "--json").code == 1
    assert sorted((str(p), p.stat().st_mtime_ns) for p in w.pki.rglob("*")) == pki_before  # no lock, no write
    assert {c: len([q for q in e.requests if q.method != "GET"]) for c, e in w.emulators.items()} == writes
    assert "split: c1 and c2 would reject each other" in r.out and "split: c2 and c3 would reject each other" in r.out
    assert "error: the mesh is split: c1 and c2, c2 and c3" in r.err
    status = w.cli("mesh", "status", *w.ctx_args(), "--json")
    assert status.code == 1
    assert json.loads(status.out)["trust"]["invariant"]["pairs"] == [["c1", "c2"], ["c2", "c3"]]
    text = w.cli("mesh", "status", *w.ctx_args())  # the same table as mesh trust, fingerprints never shortened
    assert text.code == 1 and _root(w.pki) in text.out and "split: c1 and c2 would reject each other" in text.out


def test_a_pki_with_a_crl_bundles_and_imports_an_intermediate_under_the_next_root(world: World) -> None:
    """The folder's CRL is still the old root's while the intermediate moves under B: both steps work."""
    w = world
    assert w.cli("ca", "crl", "--dir", w.pki, "--passphrase-file", w.passfile).code == 0
    _start_rotation(w)
    for ctx in w.contexts:
        assert w.import_(w.bundle(w.contexts[ctx], f"{ctx}-ab.bundle"), ctx, "--rotate").code == 0
    _rotate(w, "cluster1")
    assert (w.pki / "cluster1" / "ca-crl.pem").exists()
    r = w.import_(w.bundle("cluster1", "c1-b.bundle"), "c1", "--rotate")
    assert r.code == 0, r.err
    assert w.trust().code == 0


def test_a_peer_without_cacerts_blocks_the_gate_and_a_missing_pki_is_bad_input(world: World) -> None:
    w = world
    with w.kube("c3") as k:
        k.delete("Secret", "cacerts", "istio-system")
    _start_rotation(w)
    before = w.cacerts("c1")
    r = w.import_(w.bundle("cluster1", "c1-ab.bundle"), "c1", "--rotate")
    assert r.code == 4 and "c3: secret istio-system/cacerts is missing" in r.err
    assert w.cacerts("c1")["data"] == before["data"]
    assert w.trust().code == 1
    r = w.cli("mesh", "trust", *w.ctx_args(), "--plan", w.work / "no-such-pki")
    assert r.code == 3 and r.err.startswith("airgap: error: ") and "no-such-pki" in r.err
