"""`mesh install --images BUNDLE --trust PUB --registry R` through the CLI: render, dry run and live
(the Kubernetes API emulator and a real docker-registry), each misuse's exit code and stderr line,
and `mesh status` flagging proxies that are not pinned by digest.

The images bundle is the stand-in of ``tests/pin_fixtures.py`` until the images branch lands.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures, tests.kubeapi.fixtures, ...)

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.connected.kubehelpers import FAST_ENV, seed_cacerts
from tests.helpers import Result, one_error_line, run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster
from tests.pin_fixtures import PinImages, pin_bundle, pin_image, pin_images  # noqa: F401
from tests.registry_fixtures import PIN_PASSWORD, PinRegistry, pin_registry  # noqa: F401

POLL = ("--poll", "0.02")
INSTALL = ("--cluster-name", "cluster1", "--network", "net1", "--mesh-id", "proj-1")
R = "registry.internal:5000/mesh"
MakeBundle = Callable[[Path, PinImages, Path], Path]


def _env(c: Cluster, tmp_path: Path) -> dict[str, str]:
    return {**c.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}


def _istioctl_calls(c: Cluster) -> list[list[str]]:
    if not c.istioctl_log.exists():
        return []
    return [json.loads(line) for line in c.istioctl_log.read_text().splitlines()]


def _writes(c: Cluster) -> int:  # a SelfSubjectAccessReview (a dry run asks them too) is a question
    return len([q for q in c.emu().requests if q.method != "GET" and "selfsubjectaccessreviews" not in q.path])


def _usage(r: Result, text: str) -> None:
    assert r.code == 2, r.out + r.err
    assert text in " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.err).split()), r.err


# -- misuse ----------------------------------------------------------------------------------------------


def test_images_trust_and_registry_go_together(release: Path, tmp_path: Path, bkeys: Keys) -> None:
    out = tmp_path / "o"
    base = ("mesh", "install", "--release", release, *INSTALL, "--output-dir", out)
    b, t, reg = ("--images", tmp_path / "b"), ("--trust", bkeys.signer_pub), ("--registry", R)
    _usage(run_cli(*base, *b), "--images, --trust and --registry go together: --trust, --registry missing")
    _usage(run_cli(*base, *b, *t), "--images, --trust and --registry go together: --registry missing")
    _usage(run_cli(*base, *reg), "--images, --trust and --registry go together: --images, --trust missing")
    _usage(run_cli(*base, *t, *reg), "go together: --images missing")
    _usage(run_cli(*base, "--ca-bundle", tmp_path / "ca.pem"), "--ca-bundle and --authfile only apply with --images")
    _usage(run_cli(*base, "--authfile", tmp_path / "a.json"), "--ca-bundle and --authfile only apply with --images")
    assert not out.exists()


def test_render_bad_inputs(release: Path, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle) -> None:
    out = tmp_path / "o"
    good = pin_bundle(tmp_path / "mesh.images", pin_images("pilot", "proxyv2"), bkeys.signer_pub)
    base = ("mesh", "install", "--release", release, *INSTALL, "--output-dir", out)
    # a wrong signer: exit 1
    r = run_cli(*base, "--images", good, "--trust", bkeys.other_signer_pub, "--registry", R)
    assert r.code == 1 and "mesh.images: not signed by a trusted key" in one_error_line(r)
    # a bad registry value: exit 3
    r = run_cli(*base, "--images", good, "--trust", bkeys.signer_pub, "--registry", "https://r.example/mesh")
    assert r.code == 3 and "registry 'https://r.example/mesh': expected HOST[:PORT][/PATH]" in one_error_line(r)
    # an image the install needs is not in the bundle: exit 4, naming it
    short = pin_bundle(tmp_path / "short.images", pin_images("pilot"), bkeys.signer_pub)
    r = run_cli(*base, "--images", short, "--trust", bkeys.signer_pub, "--registry", R)
    assert r.code == 4 and "short.images: lacks image(s) proxyv2 that this install needs" in one_error_line(r)
    # an overlay choosing an image: exit 3
    overlay = tmp_path / "hub.yaml"
    overlay.write_text("spec:\n  hub: gcr.io/istio-release\n")
    r = run_cli(*base, "-f", overlay, "--images", good, "--trust", bkeys.signer_pub, "--registry", R)
    assert r.code == 3 and "hub.yaml: sets spec.hub, but --images pins every image" in one_error_line(r)
    # a profile the release has no file for: its images cannot be known, exit 3
    r = run_cli(*base, "--profile", "nosuch", "--images", good, "--trust", bkeys.signer_pub, "--registry", R)
    assert r.code == 3 and "the release has no profile 'nosuch'" in one_error_line(r)
    # a trust key that is not a key: exit 3
    r = run_cli(*base, "--images", good, "--trust", overlay, "--registry", R)
    assert r.code == 3 and "hub.yaml" in one_error_line(r)
    assert not out.exists()


def test_render_pins_every_image_and_names_no_public_hub(
    release: Path, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle
) -> None:
    bundle = pin_bundle(tmp_path / "mesh.images", pin_images("pilot", "proxyv2"), bkeys.signer_pub)
    args = ("--images", bundle, "--trust", bkeys.signer_pub, "--registry", R, "--east-west")

    def render(folder: Path) -> dict[str, bytes]:
        r = run_cli("mesh", "install", "--release", release, *INSTALL, *args, "--output-dir", folder)
        assert r.code == 0, r.err
        return {p: (folder / p).read_bytes() for p in tree(folder)}

    a = render(tmp_path / "a")
    for name, data in a.items():
        for word in (b"gcr.io", b"docker.io", b"gke-release"):
            assert word not in data, (name, word)
    cluster = a["cluster.yaml"].decode()
    assert f"image: {R}/pilot@sha256:" in cluster and f"image: {R}/proxyv2@sha256:" in cluster
    assert f"hub: {R}" in cluster and "1.8.6-asm.8" not in cluster
    assert f"image: {R}/proxyv2@sha256:" in a["eastwest-gateway.yaml"].decode()
    b = render(tmp_path / "b")
    assert {k: v for k, v in a.items() if k != "istioctl-install.sh"} == {
        k: v for k, v in b.items() if k != "istioctl-install.sh"
    }  # same inputs, byte-identical files (the script names its own folder)


# -- live ------------------------------------------------------------------------------------------------


def _seeded(reg: PinRegistry, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle, *names: str) -> Path:
    """Push ``names`` to the registry under mesh/; a bundle naming pilot and proxyv2 by those digests
    (an image not pushed gets a digest the registry lacks)."""
    pushed = {n: reg.seed("mesh", n, "1.8.6-asm.8") for n in names}
    images = PinImages(tuple(pin_image(n, digest=pushed.get(n)) for n in ("pilot", "proxyv2")))
    return pin_bundle(tmp_path / "mesh.images", images, bkeys.signer_pub)


def _pin_args(reg: PinRegistry, bundle: Path, bkeys: Keys) -> tuple[str | Path, ...]:
    return ("--images", bundle, "--trust", bkeys.signer_pub, "--registry", f"{reg.host}/mesh",
            "--ca-bundle", reg.ca_pem, "--authfile", reg.authfile)  # fmt: skip


def test_live_install_by_digest_then_status(
    kube_cluster: Cluster, release: Path, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle, pin_registry: PinRegistry
) -> None:
    emu = kube_cluster.emu()
    seed_cacerts(emu)
    env = _env(kube_cluster, tmp_path)
    bundle = _seeded(pin_registry, tmp_path, bkeys, pin_bundle, "pilot", "proxyv2")
    ctx = ("--context", kube_cluster.context)
    r = run_cli("mesh", "install", *ctx, "--release", release, *INSTALL, *_pin_args(pin_registry, bundle, bkeys),
                *POLL, "--json", env=env)  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert set(doc["images"]) == {"pilot", "proxyv2"}
    assert all(re.fullmatch(rf"{re.escape(pin_registry.host)}/mesh/{n}@sha256:[0-9a-f]{{64}}", v)
               for n, v in doc["images"].items())  # fmt: skip
    assert f"checking the registry serves {doc['images']['pilot']}" in r.err
    assert PIN_PASSWORD not in r.out + r.err and len(_istioctl_calls(kube_cluster)) == 1
    # the injector of this revision now runs the pinned proxy: status finds nothing about proxies (its
    # one problem is seed_cacerts' placeholder certificate)
    emu.add_deployment("shop", "web", {"app": "web"}, replicas=2)
    r = run_cli("mesh", "inject", "shop", *ctx, "--restart", *POLL, env=env)
    assert r.code == 0, r.err
    r = run_cli("mesh", "status", *ctx, "--json", env=env)
    st = json.loads(r.out)
    assert st["proxy_images"] == {"pinned": 2, "flagged": []}
    assert st["problems"] == ["secret istio-system/cacerts: cacerts ca-cert.pem: not a valid PEM certificate"]
    pods = emu.list("pods", "shop")
    assert {c["image"] for p in pods for c in p["spec"]["containers"] if c["name"] == "istio-proxy"} == {
        doc["images"]["proxyv2"]
    }
    # a workload choosing its own proxy: flagged in text and JSON, exit 1
    emu.add_deployment("shop", "rogue", {"app": "rogue"}, replicas=1)
    dep = emu.get("deployments", "shop", "rogue")
    assert dep is not None
    emu.patch("deployments", "shop", "rogue", {"spec": {"template": {"metadata": {"annotations": {
        "sidecar.istio.io/proxyImage": "docker.io/istio/proxyv2:1.8.6"}}}}})  # fmt: skip
    emu.wait_idle()
    r = run_cli("mesh", "status", *ctx, env=env)
    assert r.code == 1
    line = one_error_line(r)
    assert "sets sidecar.istio.io/proxyImage=docker.io/istio/proxyv2:1.8.6: it picks its own proxy" in line
    assert "istio-proxy image docker.io/istio/proxyv2:1.8.6 is not pinned by digest" in line
    assert "proxy images: 2 pinned by digest, 1 flagged" in r.out
    st = json.loads(run_cli("mesh", "status", *ctx, "--json", env=env).out)
    [flagged] = st["proxy_images"]["flagged"]
    assert flagged["proxy_image_annotation"] == "docker.io/istio/proxyv2:1.8.6"
    assert flagged["images"] == ["docker.io/istio/proxyv2:1.8.6"] and flagged["namespace"] == "shop"


def test_live_install_refused_when_the_registry_lacks_a_digest(
    kube_cluster: Cluster, release: Path, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle, pin_registry: PinRegistry
) -> None:
    emu = kube_cluster.emu()
    seed_cacerts(emu)
    env = _env(kube_cluster, tmp_path)
    bundle = _seeded(pin_registry, tmp_path, bkeys, pin_bundle, "pilot")  # proxyv2 never pushed
    before = _writes(kube_cluster)
    for extra in ((), ("--dry-run",)):
        r = run_cli("mesh", "install", "--context", kube_cluster.context, "--release", release, *INSTALL,
                    *_pin_args(pin_registry, bundle, bkeys), *extra, *POLL, env=env)  # fmt: skip
        assert r.code == 4, r.err
        line = one_error_line(r, alone=False)
        assert f"the registry does not serve 1 pinned image(s): {pin_registry.host}/mesh/proxyv2@sha256:" in line
        assert "/pilot@" not in line
    assert _istioctl_calls(kube_cluster) == [] and _writes(kube_cluster) == before
    assert emu.get("services", "istio-system", "istiod") is None


def test_dry_run_checks_the_registry_and_prints_the_images(
    kube_cluster: Cluster, release: Path, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle, pin_registry: PinRegistry
) -> None:
    seed_cacerts(kube_cluster.emu())
    env = _env(kube_cluster, tmp_path)
    bundle = _seeded(pin_registry, tmp_path, bkeys, pin_bundle, "pilot", "proxyv2")
    before = _writes(kube_cluster)
    r = run_cli("mesh", "install", "--context", kube_cluster.context, "--release", release, *INSTALL,
                *_pin_args(pin_registry, bundle, bkeys), "--dry-run", env=env)  # fmt: skip
    assert r.code == 0, r.err
    assert re.search(rf"image proxyv2: {re.escape(pin_registry.host)}/mesh/proxyv2@sha256:[0-9a-f]{{64}}", r.out)
    assert "dry run, nothing changed" in r.out
    assert _istioctl_calls(kube_cluster) == [] and _writes(kube_cluster) == before
    # without the auth file's credentials: exit 5, nothing changed
    empty = tmp_path / "empty.json"
    empty.write_text('{"auths": {}}')
    args = [str(a) for a in _pin_args(pin_registry, bundle, bkeys)]
    args[args.index("--authfile") + 1] = str(empty)
    r = run_cli("mesh", "install", "--context", kube_cluster.context, "--release", release, *INSTALL, *args, env=env)
    assert r.code == 5 and "unauthorized" in one_error_line(r, alone=False)
    assert _istioctl_calls(kube_cluster) == [] and _writes(kube_cluster) == before


def test_fleet_layout_pins_every_cluster(release: Path, tmp_path: Path, bkeys: Keys, pin_bundle: MakeBundle) -> None:
    bundle = pin_bundle(tmp_path / "mesh.images", pin_images("pilot", "proxyv2"), bkeys.signer_pub)
    out = tmp_path / "fleet"
    r = run_cli("mesh", "install", "--context", "c1", "--context", "c2", "--release", release,
                "--cluster-name", "{context}", "--network", "net-{context}", "--mesh-id", "proj-1",
                "--images", bundle, "--trust", bkeys.signer_pub, "--registry", R, "--output-dir", out)  # fmt: skip
    assert r.code == 0, r.err
    for ctx in ("c1", "c2"):
        cluster = (out / "clusters" / ctx / "cluster.yaml").read_text()
        assert f"image: {R}/proxyv2@sha256:" in cluster and f"clusterName: {ctx}" in cluster
        assert "gcr.io" not in cluster and "1.8.6-asm.8" not in cluster
