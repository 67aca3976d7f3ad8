"""GitOps output through the CLI: ``--sops-age`` and the fleet layout, with the real sops and kubectl.

``bundle import --context … --output-dir DIR --sops-age`` and ``mesh install --context … --output-dir
DIR --sops-age`` render one Git tree (DIR/.sops.yaml, DIR/clusters/CTX/). Proven here: every SOPS
file decrypts (``sops decrypt`` with SOPS_AGE_KEY_FILE) to the plaintext rendering; ``kubectl
kustomize clusters/CTX`` builds and its Secret is still SOPS-encrypted; a re-render leaves Git with
no diff; a CA rotation is one changed file; no private key is anywhere under DIR.
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.core import age
from airgap.core.sops import find_sops
from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.helpers import Result, one_error_line, run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.release_fixtures import make_signed_release

CTXS = ("a", "b", "c")
RESOURCES = ["00-namespace.yaml", "10-cacerts-secret.sops.yaml", "30-istiod-service.yaml"]


@pytest.fixture(scope="module")
def _release_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("release")
    tarball, sig, pub = make_signed_release(tmp)
    out = tmp / "extracted"
    assert run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out).code == 0
    return out


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> age.RecipientKeyFiles:
    """The cluster-side age identity (Flux's ``sops-age`` Secret)."""
    return age.new_recipient_key("flux", tmp_path_factory.mktemp("flux"), None)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AIRGAP_STATE_DIR": str(tmp_path / "state")}


def _bundle(pki: Path, keys: Keys, passfile: Path, out: Path, cluster: str = "c1") -> Path:
    r = run_cli(
        "bundle", "create", cluster, "--dir", pki, "--sign-key", keys.signer, "--recipient", keys.recipient_pub,
        "--passphrase-file", passfile, "--out", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    return out


def _import(bundle: Path, keys: Keys, env: dict[str, str], *extra: str | Path, cluster: str = "c1") -> Result:
    return run_cli(
        "bundle", "import", bundle, "--trust", keys.signer_pub, "--identity", keys.identity, "--cluster", cluster,
        *extra, env=env,
    )  # fmt: skip


def _ctx_args(ctxs: tuple[str, ...] = CTXS) -> list[str]:
    return [a for c in ctxs for a in ("--context", c)]


def _mesh(release: Path, out: Path, *extra: str | Path, ctxs: tuple[str, ...] = CTXS) -> Result:
    return run_cli(
        "mesh", "install", *_ctx_args(ctxs), "--release", release, "--cluster-name", "{context}",
        "--network", "net-{context}", "--mesh-id", "proj-1", "--output-dir", out, *extra,
    )  # fmt: skip


def _sops_decrypt(path: Path, identity: Path) -> dict[str, Any]:
    p = subprocess.run(
        [str(find_sops()), "decrypt", str(path)],
        capture_output=True,
        env={"SOPS_AGE_KEY_FILE": str(identity), "PATH": "/usr/bin:/bin", "SOPS_DISABLE_VERSION_CHECK": "1"},
        check=False,
    )
    assert p.returncode == 0, p.stderr
    doc: dict[str, Any] = yaml.safe_load(p.stdout)
    return doc


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    p = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def _secret_needles(plain_secret: dict[str, Any]) -> list[bytes]:
    """What must never appear under DIR: the PEM key, its base64 (as in data), its PEM body lines."""
    pem = base64.b64decode(plain_secret["data"]["ca-key.pem"])
    assert b"PRIVATE KEY-----" in pem
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith(b"-----")]
    return [b"PRIVATE KEY-----", plain_secret["data"]["ca-key.pem"].encode(), pem, *body]


def assert_no_secret_under(folder: Path, needles: list[bytes]) -> None:
    """Grep every file below ``folder`` (hidden files and leftover temp files included)."""
    seen = 0
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            seen += 1
            for n in needles:
                assert n not in data, f"{p} holds secret material"
    assert seen > 0


def _git(repo: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1"}
    p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return p.stdout


def _commit_all(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message)


def test_fleet_tree_decrypts_to_the_plaintext_and_builds(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], flux: age.RecipientKeyFiles,
    _release_template: Path, tmp_path: Path,
) -> None:  # fmt: skip
    bundle = _bundle(pki, bkeys, passfile, tmp_path / "c1.bundle")
    out = tmp_path / "gitops"
    r = _import(bundle, bkeys, env, *_ctx_args(), "--output-dir", out, "--sops-age", flux.public)
    assert r.code == 0, r.err
    assert all(f"\n{c} " in "\n" + r.out for c in CTXS) and "rendered" in r.out
    r = _mesh(_release_template, out, "--sops-age", flux.recipient)
    assert r.code == 0, r.err
    plain = tmp_path / "plain"  # the same bundle again (equal sequence and id are accepted again)
    r = _import(bundle, bkeys, env, "--context", "a", "--output-dir", plain, "--plaintext-secrets")
    assert r.code == 0, r.err
    plain_secret = yaml.safe_load((plain / "clusters" / "a" / "10-cacerts-secret.yaml").read_text())
    assert not (plain / ".sops.yaml").exists()

    sops_cfg = yaml.safe_load((out / ".sops.yaml").read_text())
    assert sops_cfg["creation_rules"][0]["age"] == flux.recipient
    assert sops_cfg["creation_rules"][0]["encrypted_regex"] == "^(data|stringData)$"
    for ctx in CTXS:
        folder = out / "clusters" / ctx
        assert tree(folder) == sorted([*RESOURCES, "cluster.yaml", "istioctl-install.sh", "kustomization.yaml"])
        kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert kust["kind"] == "Kustomization" and kust["resources"] == RESOURCES  # apply order
        # the SOPS file gives back exactly the plaintext rendering
        assert _sops_decrypt(folder / "10-cacerts-secret.sops.yaml", flux.private) == plain_secret
        built = _kustomize(folder)
        kinds = {(d["kind"], d["metadata"]["name"]): d for d in built}
        assert set(kinds) == {("Namespace", "istio-system"), ("Secret", "cacerts"), ("Service", "istiod")}
        assert kinds["Namespace", "istio-system"]["metadata"]["labels"] == {"topology.istio.io/network": f"net-{ctx}"}
        secret = kinds["Secret", "cacerts"]
        assert secret["sops"]["age"][0]["recipient"] == flux.recipient
        assert all(str(v).startswith("ENC[AES256_GCM,") for v in secret["data"].values())
        assert secret["metadata"]["annotations"] == plain_secret["metadata"]["annotations"]  # reviewable in a diff
    assert_no_secret_under(out, [*_secret_needles(plain_secret), b"AGE-SECRET-KEY-1"])


def test_rerender_is_no_git_diff_and_rotation_is_one_file(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], flux: age.RecipientKeyFiles,
    _release_template: Path, tmp_path: Path,
) -> None:  # fmt: skip
    first = _bundle(pki, bkeys, passfile, tmp_path / "first.bundle")
    out = tmp_path / "gitops"
    sops_args = ("--output-dir", out, "--sops-age", flux.public)
    assert _import(first, bkeys, env, *_ctx_args(("a", "b")), *sops_args).code == 0
    assert _mesh(_release_template, out, "--sops-age", flux.public, ctxs=("a", "b")).code == 0
    _git(out, "init", "-q")
    _commit_all(out, "render")
    stamp = {
        p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.rglob("*") if p.is_file() and ".git" not in p.parts
    }

    # 1. the same inputs again: every file untouched (SOPS files too, despite sops's nonces)
    r = _import(first, bkeys, env, *_ctx_args(("a", "b")), *sops_args)
    assert r.code == 0, r.err
    assert "unchanged" in r.out and "rendered" not in r.out
    assert _mesh(_release_template, out, "--sops-age", flux.public, ctxs=("a", "b")).code == 0
    assert _git(out, "status", "--porcelain") == ""
    assert stamp == {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in stamp}

    # 2. the officer rotates c1's CA: without --rotate the tree is refused and untouched
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    rotated = _bundle(pki, bkeys, passfile, tmp_path / "rotated.bundle")
    r = _import(rotated, bkeys, env, "--context", "a", *sops_args)
    assert r.code == 4 and "already exists with other content" in one_error_line(r)
    assert _git(out, "status", "--porcelain") == ""
    # 3. with --rotate: exactly one file changes, and it decrypts to the new CA (sequence 2)
    r = _import(rotated, bkeys, env, "--context", "a", *sops_args, "--rotate")
    assert r.code == 0, r.err
    assert _git(out, "status", "--porcelain").splitlines() == [" M clusters/a/10-cacerts-secret.sops.yaml"]
    doc = _sops_decrypt(out / "clusters" / "a" / "10-cacerts-secret.sops.yaml", flux.private)
    assert doc["metadata"]["annotations"]["airgap.dev/sequence"] == "2"
    diff = _git(out, "diff", "--", "clusters/a/10-cacerts-secret.sops.yaml")
    assert "airgap.dev/sequence" in diff and "airgap.dev/ca-fingerprint" in diff  # the review sees what changed
    _commit_all(out, "rotate c1")

    # 4. the older bundle never comes back into the tree, not even with --rotate and a fresh state folder
    fresh = {"AIRGAP_STATE_DIR": str(tmp_path / "other-host")}
    r = _import(first, bkeys, fresh, "--context", "a", *sops_args, "--rotate")
    assert r.code == 4 and "refusing a rollback" in one_error_line(r)
    assert _git(out, "status", "--porcelain") == ""


def test_plaintext_tree_switches_to_sops_without_leaving_the_key(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], flux: age.RecipientKeyFiles, tmp_path: Path
) -> None:
    bundle = _bundle(pki, bkeys, passfile, tmp_path / "c1.bundle")
    out = tmp_path / "gitops"
    assert _import(bundle, bkeys, env, "--context", "a", "--output-dir", out, "--plaintext-secrets").code == 0
    plain = yaml.safe_load((out / "clusters" / "a" / "10-cacerts-secret.yaml").read_text())
    r = _import(bundle, bkeys, env, "--context", "a", "--output-dir", out, "--sops-age", flux.recipient)
    assert r.code == 0, r.err
    assert tree(out / "clusters" / "a") == ["00-namespace.yaml", "10-cacerts-secret.sops.yaml", "kustomization.yaml"]
    assert yaml.safe_load((out / "clusters" / "a" / "kustomization.yaml").read_text())["resources"] == [
        "00-namespace.yaml",
        "10-cacerts-secret.sops.yaml",
    ]
    assert_no_secret_under(out, _secret_needles(plain))
    assert [d["kind"] for d in _kustomize(out / "clusters" / "a")] == ["Namespace", "Secret"]


def test_flat_output_dir_with_sops(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], flux: age.RecipientKeyFiles, tmp_path: Path
) -> None:
    bundle = _bundle(pki, bkeys, passfile, tmp_path / "c1.bundle")
    out = tmp_path / "flat"
    r = _import(bundle, bkeys, env, "--output-dir", out, "--sops-age", flux.recipient)
    assert r.code == 0, r.err
    assert tree(out) == ["00-namespace.yaml", "10-cacerts-secret.sops.yaml"]
    plain = tmp_path / "plain"
    assert _import(bundle, bkeys, env, "--output-dir", plain, "--plaintext-secrets").code == 0
    want = yaml.safe_load((plain / "10-cacerts-secret.yaml").read_text())
    assert _sops_decrypt(out / "10-cacerts-secret.sops.yaml", flux.private) == want
    assert_no_secret_under(out, _secret_needles(want))


def test_bad_recipient_and_missing_sops_write_nothing(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], tmp_path: Path
) -> None:
    bundle = _bundle(pki, bkeys, passfile, tmp_path / "c1.bundle")
    out = tmp_path / "gitops"
    for bad in ("age1qqqq", str(bkeys.signer_pub), "ssh-ed25519 AAAA"):
        r = _import(bundle, bkeys, env, "--context", "a", "--output-dir", out, "--sops-age", bad)
        assert r.code == 3, (bad, r.err)
        one_error_line(r)
    missing = {**env, "AIRGAP_SOPS": str(tmp_path / "no-sops")}
    r = _import(bundle, bkeys, missing, "--context", "a", "--output-dir", out, "--sops-age", bkeys.recipient)
    assert r.code == 4 and "AIRGAP_SOPS" in one_error_line(r)
    assert not out.exists() and not (tmp_path / "state").exists()  # refused before the bundle was accepted


def test_tree_refusals_and_usage(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], _release_template: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gitops"
    # a context name that is not a folder name is refused before anything is written
    bundle = _bundle(pki, bkeys, passfile, tmp_path / "c1.bundle")
    r = _import(bundle, bkeys, env, "--context", "../escape", "--output-dir", out, "--plaintext-secrets")
    assert r.code == 3 and "not usable as a cluster folder name" in one_error_line(r)
    assert not out.exists() and not (tmp_path / "escape").exists()
    # mesh: a different network in the tree needs --force; the rest of the fleet is rendered
    assert _mesh(_release_template, out, ctxs=("a", "b")).code == 0
    r = run_cli(
        "mesh", "install", "--context", "a", "--context", "b", "--release", _release_template,
        "--cluster-name", "{context}", "--network", "other", "--mesh-id", "proj-1", "--output-dir", out,
    )  # fmt: skip
    assert r.code == 4 and "already exists with other content" in r.out + r.err
    assert yaml.safe_load((out / "clusters" / "a" / "00-namespace.yaml").read_text())["metadata"]["labels"] == {
        "topology.istio.io/network": "net-a"
    }
    # usage: --sops-age with the flat layout, --layout without --output-dir
    r = run_cli(
        "mesh", "install", "--release", _release_template, "--cluster-name", "x", "--network", "n", "--mesh-id", "m",
        "--output-dir", tmp_path / "flat", "--sops-age", bkeys.recipient,
    )  # fmt: skip
    assert r.code == 2 and "--sops-age needs the clusters layout" in r.err
    r = run_cli(
        "mesh", "install", "--release", _release_template, "--cluster-name", "x", "--network", "n", "--mesh-id", "m",
        "--layout", "clusters",
    )  # fmt: skip
    assert r.code == 2 and "only apply to --output-dir" in r.err
    # one context in the clusters layout
    r = run_cli(
        "mesh", "install", "--context", "solo", "--release", _release_template, "--cluster-name", "solo",
        "--network", "n", "--mesh-id", "m", "--output-dir", out, "--layout", "clusters",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert yaml.safe_load((out / "clusters" / "solo" / "kustomization.yaml").read_text())["resources"] == [
        "00-namespace.yaml",
        "30-istiod-service.yaml",
    ]
    shutil.rmtree(out)


def test_east_west_gateway_joins_the_tree(_release_template: Path, tmp_path: Path) -> None:
    out = tmp_path / "gitops"
    r = _mesh(_release_template, out, "--east-west", ctxs=("a", "b"))
    assert r.code == 0, r.err
    folder = out / "clusters" / "a"
    assert yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"] == [
        "00-namespace.yaml",
        "30-istiod-service.yaml",
        "40-cross-network-gateway.yaml",
    ]
    assert (folder / "eastwest-gateway.yaml").exists()  # istioctl's input, not applied by kustomize
    kinds = sorted(d["kind"] for d in _kustomize(folder))
    assert kinds == ["Gateway", "Namespace", "Service"]
    # the namespace carries the mesh identity; a different mesh ID in the tree needs --force
    r = run_cli(
        "mesh", "install", *_ctx_args(("a", "b")), "--release", _release_template, "--cluster-name", "{context}",
        "--network", "net-{context}", "--mesh-id", "other-mesh", "--output-dir", out, "--east-west",
    )  # fmt: skip
    assert r.code == 4 and "00-namespace.yaml: already exists with other content" in r.out
    r = run_cli(
        "mesh", "install", *_ctx_args(("a", "b")), "--release", _release_template, "--cluster-name", "{context}",
        "--network", "net-{context}", "--mesh-id", "other-mesh", "--output-dir", out, "--east-west", "--force",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "other-mesh" in (folder / "cluster.yaml").read_text()


def test_mesh_connect_renders_remote_secrets_as_sops(
    kube_fleet: Any, pki: Path, flux: age.RecipientKeyFiles, tmp_path: Path
) -> None:
    from tests.connect_fixtures import connect_env, ctx_args
    from tests.connect_fixtures import connect_fleet as _fleet
    from tests.connect_fixtures import remote_secrets_of as _remote_secrets

    fleet = _fleet(kube_fleet, pki, 2)
    env = connect_env(fleet, tmp_path)
    assert run_cli("mesh", "connect", *ctx_args(fleet.contexts), "--poll", "0.02", env=env).code == 0  # tokens
    out = tmp_path / "conn"
    args = ("mesh", "connect", *ctx_args(fleet.contexts), "--output-dir", out)
    r = run_cli(*args, env=env)
    assert r.code == 2 and "remote secrets hold API tokens" in r.err and "--sops-age" in r.err
    r = run_cli(*args, "--sops-age", flux.public, env=env)
    assert r.code == 0, r.err
    assert yaml.safe_load((out / ".sops.yaml").read_text())["creation_rules"][0]["age"] == flux.recipient
    secret_file = out / "clusters" / fleet.contexts[1] / "50-istio-remote-secret-cluster1.sops.yaml"
    live = _remote_secrets(fleet.emulators[fleet.contexts[1]])["istio-remote-secret-cluster1"]
    plain = _sops_decrypt(secret_file, flux.private)
    assert plain["data"] == live["data"] and plain["metadata"]["labels"] == live["metadata"]["labels"]
    token = yaml.safe_load(base64.b64decode(next(iter(live["data"].values()))))["users"][0]["user"]["token"]
    assert len(token) > 16
    assert_no_secret_under(out, [token.encode(), next(iter(live["data"].values())).encode()])
    built = {d["metadata"]["name"]: d for d in _kustomize(out / "clusters" / fleet.contexts[1])}
    assert "sops" in built["istio-remote-secret-cluster1"]
