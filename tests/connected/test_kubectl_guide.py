"""The guide's own ``kubectl`` commands, run with the real kubectl, then airgap on the same cluster.

Each side reads what the other wrote: kubectl's hand-made ``cacerts`` is adopted by ``bundle
import`` (annotated, data untouched), airgap's objects are what ``kubectl get`` shows, the
namespace labels kubectl sets are what ``mesh status`` and ``mesh inject`` see, and the pods
``kubectl rollout restart`` makes are injected only once a control plane of that revision runs.

Runs against the emulator, or a real cluster with ``AIRGAP_TEST_KUBECONFIG`` (the parts that need
the simulated ``istioctl install`` and seeded workloads are emulator-only). Skipped only where
kubectl is not on the PATH.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.kubeapi.fixtures)

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.connected.kubehelpers import FAST_ENV, KEYS
from tests.guide_fixtures import ISTIOD_SERVICE, REV
from tests.helpers import Result, one_error_line, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import REAL_KUBECONFIG, Cluster
from tests.release_fixtures import make_signed_release

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")


def kubectl(c: Cluster, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "KUBECONFIG": str(c.kubeconfig)}
    p = subprocess.run(
        [KUBECTL, f"--context={c.context}", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if ok:
        assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr}"
    return p


def kjson(c: Cluster, *args: str) -> dict:
    return json.loads(kubectl(c, *args, "-o", "json").stdout)


def _env(c: Cluster, tmp_path: Path) -> dict[str, str]:
    return {**c.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}


def _bundle(pki: Path, keys: Keys, passfile: Path, out: Path) -> Path:
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", keys.signer, "--recipient", keys.recipient_pub,
        "--passphrase-file", passfile, "--out", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    return out


def _import(bundle: Path, keys: Keys, c: Cluster, env: dict[str, str]) -> Result:
    return run_cli(
        "bundle", "import", bundle, "--trust", keys.signer_pub, "--identity", keys.identity, "--cluster", "c1",
        "--context", c.context, env=env,
    )  # fmt: skip


def plain_files(cluster_dir: Path, passfile: Path, out: Path, *, traditional: bool = False) -> Path:
    """The four files as the guide has them: airgap keeps ca-key.pem encrypted, istiod needs it plain,
    so the operator decrypts it with openssl (PKCS#8 by default, or the traditional encoding)."""
    out.mkdir(parents=True)
    for name in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
        shutil.copy(cluster_dir / name, out / name)
    cmd = ["openssl", "pkey", "-in", str(cluster_dir / "ca-key.pem"), "-passin", f"file:{passfile}"]
    subprocess.run([*cmd, *(["-traditional"] if traditional else []), "-out", str(out / "ca-key.pem")], check=True)
    return out


def _hand_made_cacerts(c: Cluster, files: Path) -> None:
    """The guide, step by step: the namespace and cacerts from the four files."""
    p = kubectl(c, "create", "namespace", "istio-system", ok=False)
    assert p.returncode == 0 or "AlreadyExists" in p.stderr, p.stderr
    kubectl(
        c, "create", "secret", "generic", "cacerts", "-n", "istio-system",
        f"--from-file={files / 'ca-cert.pem'}", f"--from-file={files / 'ca-key.pem'}",
        f"--from-file={files / 'root-cert.pem'}", f"--from-file={files / 'cert-chain.pem'}",
    )  # fmt: skip


@pytest.fixture
def cluster(kube_cluster: Cluster):  # type: ignore[no-untyped-def]
    yield kube_cluster
    if kube_cluster.emulator is None:  # a real cluster: remove what the test made
        kubectl(kube_cluster, "delete", "secret", "-n", "istio-system", "cacerts", "--ignore-not-found", ok=False)


@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8-key", "traditional-key"])
def test_hand_made_cacerts_from_the_same_files_is_adopted(
    cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path, traditional: bool
) -> None:
    files = plain_files(pki / "c1", passfile, tmp_path / "files", traditional=traditional)
    _hand_made_cacerts(cluster, files)
    before = kjson(cluster, "get", "secret", "-n", "istio-system", "cacerts")
    assert {k: base64.b64decode(v) for k, v in before["data"].items()} == {k: (files / k).read_bytes() for k in KEYS}
    bundle = _bundle(pki, bkeys, passfile, tmp_path / "c1.bundle")
    r = _import(bundle, bkeys, cluster, _env(cluster, tmp_path))
    assert r.code == 0, r.err
    assert "annotated" in r.out
    after = kjson(cluster, "get", "secret", "-n", "istio-system", "cacerts")
    assert after["data"] == before["data"] and after["type"] == "Opaque"
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # the same object, adopted
    ann = after["metadata"]["annotations"]
    assert ann["airgap.dev/sequence"] == "1" and ann["airgap.dev/bundle-id"]
    r = _import(bundle, bkeys, cluster, _env(cluster, tmp_path))  # a rerun: nothing to do
    assert r.code == 0 and "unchanged" in r.out, r.err


def test_hand_made_cacerts_from_other_files_is_refused(
    cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    _hand_made_cacerts(cluster, plain_files(pki / "c2", passfile, tmp_path / "files"))
    before = kjson(cluster, "get", "secret", "-n", "istio-system", "cacerts")
    r = _import(_bundle(pki, bkeys, passfile, tmp_path / "c1.bundle"), bkeys, cluster, _env(cluster, tmp_path))
    assert r.code == 4
    line = one_error_line(r, alone=False)
    c2 = x509.load_pem_x509_certificate((tmp_path / "files" / "ca-cert.pem").read_bytes())
    live_fp = c2.fingerprint(hashes.SHA256()).hex()  # no annotation: read from the secret's own ca-cert.pem
    assert f"already exists with different content (sequence unknown, CA fingerprint {live_fp})" in line
    assert kjson(cluster, "get", "secret", "-n", "istio-system", "cacerts") == before


@pytest.fixture(scope="module")
def _release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("release")
    tarball, sig, pub = make_signed_release(tmp)
    out = tmp / "extracted"
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out)
    assert r.code == 0, r.err
    return out


def test_the_guide_with_kubectl_then_airgap(
    cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path, _release: Path
) -> None:
    emu = cluster.emu()  # istioctl install and the workloads are simulated
    env = _env(cluster, tmp_path)
    # kubectl config get-contexts / get --raw /version
    assert cluster.context in kubectl(cluster, "config", "get-contexts", "-o", "name").stdout.split()
    assert json.loads(kubectl(cluster, "get", "--raw", "/version").stdout)["gitVersion"] == emu.version
    # create clusterrolebinding cluster-admin-binding --clusterrole=cluster-admin --user=USER_ACCOUNT
    kubectl(cluster, "create", "clusterrolebinding", "cluster-admin-binding", "--clusterrole=cluster-admin",
            "--user=user@example.com")  # fmt: skip
    crb = emu.get("clusterrolebindings", None, "cluster-admin-binding")
    assert crb is not None and crb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cluster-admin",
    }
    assert crb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "user@example.com"}]
    assert kubectl(cluster, "auth", "can-i", "create", "clusterrolebindings").stdout.strip() == "yes"
    # create namespace istio-system; create secret generic cacerts --from-file ... ; airgap adopts it
    _hand_made_cacerts(cluster, plain_files(pki / "c1", passfile, tmp_path / "files"))
    r = _import(_bundle(pki, bkeys, passfile, tmp_path / "c1.bundle"), bkeys, cluster, env)
    assert r.code == 0 and "annotated" in r.out, r.err
    # label namespace istio-system topology.istio.io/network=NETWORK_ID; airgap install agrees with it
    kubectl(cluster, "label", "namespace", "istio-system", "topology.istio.io/network=net1")
    # apply -f istiod-service.yaml, and again after a change
    svc_file = tmp_path / "istiod-service.yaml"
    svc_file.write_text(ISTIOD_SERVICE)
    assert "service/istiod created" in kubectl(cluster, "apply", "-f", str(svc_file)).stdout
    changed = yaml.safe_load(ISTIOD_SERVICE)
    changed["metadata"]["labels"]["extra"] = "x"
    changed["spec"]["ports"] = [p for p in changed["spec"]["ports"] if p["port"] != 15014]
    svc_file.write_text(yaml.safe_dump(changed))
    assert "service/istiod configured" in kubectl(cluster, "apply", "-f", str(svc_file)).stdout
    live = emu.get("services", "istio-system", "istiod")
    assert live is not None and [p["port"] for p in live["spec"]["ports"]] == [15010, 15012, 443]
    assert live["metadata"]["labels"]["extra"] == "x"
    # airgap mesh install (istioctl simulated) reads kubectl's label; a changed Service without airgap's
    # annotation is someone else's (issue 23): refused, then with --force put back to exactly the guide's
    install = ("mesh", "install", "--context", cluster.context, "--release", _release, "--cluster-name", "cluster1",
               "--network", "net1", "--mesh-id", "proj-1", "--revision", REV, "--wait-timeout", "20")  # fmt: skip
    r = run_cli(*install, env=env)
    assert r.code == 4 and "service istio-system/istiod was made by someone else" in r.err, r.err
    r = run_cli(*install, "--force", env=env)
    assert r.code == 0, r.err
    svc = kjson(cluster, "get", "service", "-n", "istio-system", "istiod")
    assert [p["port"] for p in svc["spec"]["ports"]] == [15010, 15012, 443, 15014]
    assert "extra" not in svc["metadata"]["labels"]
    assert svc["metadata"]["annotations"] == {"airgap.dev/managed-by": "airgap mesh install"}
    # get pod -n istio-system; get pods -l app=istiod --show-labels
    emu.wait_idle()
    pods = kubectl(cluster, "get", "pod", "-n", "istio-system").stdout
    assert pods.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert any(line.startswith(f"istiod-{REV}-") and " Running " in line for line in pods.splitlines())
    labelled = kubectl(cluster, "-n", "istio-system", "get", "pods", "-l", "app=istiod", "--show-labels").stdout
    assert f"istio.io/rev={REV}" in labelled
    # a workload; label namespace NS istio-injection- istio.io/rev=REV --overwrite; rollout restart
    emu.add_deployment("shop", "web", {"app": "web"}, replicas=2)
    kubectl(cluster, "label", "namespace", "shop", "istio-injection=enabled")
    kubectl(cluster, "label", "namespace", "shop", "istio-injection-", f"istio.io/rev={REV}", "--overwrite")
    ns = kjson(cluster, "get", "namespace", "shop")["metadata"]["labels"]
    assert ns.get("istio.io/rev") == REV and "istio-injection" not in ns
    assert "deployment.apps/web restarted" in kubectl(cluster, "rollout", "restart", "deployment", "-n", "shop").stdout
    kubectl(cluster, "rollout", "status", "deployment/web", "-n", "shop", "--timeout=20s")
    emu.wait_idle()
    injected = kubectl(cluster, "get", "pods", "-n", "shop", "-l", f"istio.io/rev={REV}", "-o", "name").stdout.split()
    assert len(injected) == 2
    # airgap reads what kubectl did: status passes but for the proxies run by tag (no --images), inject
    # finds nothing to change
    r = run_cli("mesh", "status", "--context", cluster.context, "--json", env=env)
    problems = json.loads(r.out)["problems"]
    assert r.code == 1 and len(problems) == 2 and all("is not pinned by digest" in p for p in problems), r.err
    r = run_cli("mesh", "inject", "shop", "--context", cluster.context, env=env)
    assert r.code == 0 and "unchanged" in r.out, r.out + r.err
    # airgap's own writes are what kubectl shows
    secret = kjson(cluster, "get", "secret", "-n", "istio-system", "cacerts")
    assert secret["metadata"]["annotations"]["airgap.dev/sequence"] == "1"
    assert kubectl(cluster, "auth", "can-i", "patch", "deployments", "-n", "shop").stdout.strip() == "yes"
    # neither airgap nor kubectl sent a field the kinds do not have (a 1.25+ server would warn or refuse)
    assert [(r.method, r.path, r.unknown_fields) for r in emu.requests if r.unknown_fields] == []


def test_kubectl_reads_discovery_and_refusals_like_a_real_server(cluster: Cluster) -> None:
    kubectl(cluster, "create", "namespace", "guide-strict")
    try:
        resources = kubectl(cluster, "api-resources", "-o", "name").stdout.split()
        assert {"namespaces", "secrets", "services", "pods", "deployments.apps"} <= set(resources)
        assert "clusterrolebindings.rbac.authorization.k8s.io" in resources
        short = kubectl(cluster, "get", "svc", "-n", "default", "-o", "name").stdout.split()
        assert "service/kubernetes" in short
        bad = kubectl(cluster, "create", "service", "clusterip", "1svc", "--tcp=80:80", "-n", "guide-strict", ok=False)
        assert bad.returncode != 0 and "is invalid" in bad.stderr and "metadata.name" in bad.stderr
        sel = kubectl(cluster, "get", "pods", "-n", "guide-strict", "-l", "a=b c", ok=False)
        assert sel.returncode != 0 and "BadRequest" in sel.stderr
    finally:
        kubectl(cluster, "delete", "namespace", "guide-strict", "--wait=false", ok=False)


def test_kubectl_apply_is_validated_by_a_current_server(tmp_path: Path) -> None:
    """kubectl v1.32 finds fieldValidation in the OpenAPI v3 documents and lets the server refuse."""
    from tests.kubeapi.server import DEFAULT_VERSION, Emulator, write_kubeconfig

    if REAL_KUBECONFIG:
        pytest.skip("emulator-only: a server of the current version")
    with Emulator(name="now", version=DEFAULT_VERSION) as emu:
        c = Cluster(write_kubeconfig(tmp_path / "kc", [("now", emu)]), "now", emu, tmp_path / "log")
        doc = yaml.safe_load(ISTIOD_SERVICE)
        doc["spec"]["colour"] = "blue"
        f = tmp_path / "svc.yaml"
        kubectl(c, "create", "namespace", "istio-system")
        f.write_text(yaml.safe_dump(doc))
        refused = kubectl(c, "apply", "-f", str(f), ok=False)
        assert refused.returncode == 1 and 'unknown field "spec.colour"' in refused.stderr, refused.stderr
        assert emu.get("services", "istio-system", "istiod") is None
        [req] = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/services")]
        assert req.status == 400
        del doc["spec"]["colour"]
        f.write_text(yaml.safe_dump(doc))
        assert "service/istiod created" in kubectl(c, "apply", "-f", str(f)).stdout
        assert not [r for r in emu.requests if r.unknown_fields and r.status < 300]
