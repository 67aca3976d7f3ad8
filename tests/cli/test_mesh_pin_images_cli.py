"""The whole path with the real pieces: a signed images bundle (``images`` seal/verify), ``images push``
into a docker-registry with TLS and htpasswd, then ``mesh install --images`` by digest against the
Kubernetes API emulator, and ``mesh status`` reading the pinned proxies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap.core.images_seal import seal_images
from airgap.core.keys import load_private_key, new_signing_key
from tests.connected.kubehelpers import FAST_ENV, seed_cacerts
from tests.helpers import one_error_line, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster
from tests.oci_fixtures import Blob, layout_tops, make_mesh_layout
from tests.registry_fixtures import PASSWORD, Registry, make_ca, requires_registry, start_registry
from tests.release_fixtures import make_signed_release

PASS = b"pin images pass phrase"
INSTALL = ("--cluster-name", "cluster1", "--network", "net1", "--mesh-id", "proj-1", "--poll", "0.02")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[str, Blob]]:
    """(extracted Istio 1.8.6 release with its profiles, images bundle, signer's public key, layout refs)."""
    tmp = tmp_path_factory.mktemp("pinworld")
    tarball, sig, pub = make_signed_release(tmp, version="1.8.6", istio_profiles=True, hub="docker.io/istio")
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", tmp / "rel")
    assert r.code == 0, r.err
    made = new_signing_key("officer", tmp / "keys", PASS)
    refs = make_mesh_layout(tmp / "layout")
    key = load_private_key(made.private, PASS)
    seal_images(tmp / "layout", layout_tops(tmp / "layout"), key=key, out=tmp / "mesh.images")  # type: ignore[arg-type]
    return tmp / "rel", tmp / "mesh.images", made.public, refs


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path / "dst", make_ca(tmp_path / "ca"), auth=True)
    try:
        yield reg
    finally:
        reg.stop()


def _args(reg: Registry, bundle: Path, pub: Path) -> list[str]:
    assert reg.authfile is not None
    return ["--images", str(bundle), "--trust", str(pub), "--registry", f"{reg.host}/mesh",
            "--ca-bundle", str(reg.ca.ca_pem), "--authfile", str(reg.authfile)]  # fmt: skip


@requires_registry
def test_push_then_install_by_digest(
    world: tuple[Path, Path, Path, dict[str, Blob]], registry: Registry, kube_cluster: Cluster, tmp_path: Path
) -> None:
    release, bundle, pub, refs = world
    emu = kube_cluster.emu()
    seed_cacerts(emu)
    env = {**kube_cluster.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}
    ctx = ("--context", kube_cluster.context)
    # before the push: the registry lacks every digest -> exit 4, nothing changed in the cluster
    writes = len([q for q in emu.requests if q.method != "GET"])
    r = run_cli("mesh", "install", *ctx, "--release", release, *INSTALL, *_args(registry, bundle, pub), env=env)
    assert r.code == 4, r.err
    line = one_error_line(r, alone=False)
    assert "does not serve 2 pinned image(s)" in line and "/mesh/pilot@" in line and "/mesh/proxyv2@" in line
    assert len([q for q in emu.requests if q.method != "GET"]) == writes and not kube_cluster.istioctl_log.exists()
    # push, then install
    push = ["images", "push", bundle, "--trust", pub, "--registry", f"{registry.host}/mesh", "--ca-bundle",
            registry.ca.ca_pem, "--authfile", registry.authfile or "", "--state", tmp_path / "state"]  # fmt: skip
    r = run_cli(*push, env=env)
    assert r.code == 0, r.err
    r = run_cli("mesh", "install", *ctx, "--release", release, *INSTALL, *_args(registry, bundle, pub), "--json",
                env=env)  # fmt: skip
    assert r.code == 0, r.err
    images = json.loads(r.out)["images"]
    assert images == {
        "pilot": f"{registry.host}/mesh/pilot@{refs['pilot:1.8.6'].digest}",  # a two-platform index: its digest
        "proxyv2": f"{registry.host}/mesh/proxyv2@{refs['proxyv2:1.8.6'].digest}",
    }
    assert PASSWORD not in r.out + r.err
    emu.add_deployment("shop", "web", {"app": "web"}, replicas=1)
    r = run_cli("mesh", "inject", "shop", *ctx, "--restart", "--poll", "0.02", env=env)
    assert r.code == 0, r.err
    st = json.loads(run_cli("mesh", "status", *ctx, "--json", env=env).out)
    assert st["proxy_images"] == {"pinned": 1, "flagged": []}


def test_render_from_the_real_release_profiles(world: tuple[Path, Path, Path, dict[str, Blob]], tmp_path: Path) -> None:
    release, bundle, pub, refs = world
    reg = "registry.internal:5000/mesh"
    pin = ["--images", str(bundle), "--trust", str(pub), "--registry", reg]
    r = run_cli("mesh", "install", "--release", release, *INSTALL, *pin, "--output-dir", tmp_path / "default")
    assert r.code == 0, r.err
    cluster = (tmp_path / "default" / "cluster.yaml").read_text()
    assert f"image: {reg}/pilot@{refs['pilot:1.8.6'].digest}" in cluster
    assert "install-cni" not in cluster and "docker.io" not in cluster and "1.8.6" not in cluster
    # the release's cni profile turns CNI on: install-cni is pinned too
    r = run_cli(
        "mesh", "install", "--release", release, *INSTALL, *pin, "--profile", "cni", "--output-dir", tmp_path / "c"
    )
    assert r.code == 0, r.err
    cluster = (tmp_path / "c" / "cluster.yaml").read_text()
    assert f"image: {reg}/install-cni@{refs['install-cni:1.8.6'].digest}" in cluster and "docker.io" not in cluster
    # a flipped byte in the bundle: the real verifier says no (exit 1), nothing rendered
    bad = tmp_path / "bad.images"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    pin[1] = str(bad)
    r = run_cli("mesh", "install", "--release", release, *INSTALL, *pin, "--output-dir", tmp_path / "x")
    assert r.code == 1, r.err
    one_error_line(r, "bad.images")
    assert not (tmp_path / "x").exists()
