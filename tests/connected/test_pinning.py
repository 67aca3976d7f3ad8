"""Rendering a pinned install: every image R/NAME@sha256:…, hub R, no public hub or mutable tag anywhere."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from airgap.connected.mesh import MeshSettings, eastwest_operator, render_install, render_operator
from airgap.connected.pinning import (
    UNPINNED_TAG,
    ImagePins,
    PinnedImage,
    _image_name,
    check_registry,
    load_pins,
    pin_operator,
    pinned_refs,
)
from airgap.errors import InvalidInput, Refused, VerificationError
from tests.pin_fixtures import PinImages, pin_digest, pin_image, pin_images

R = "registry.internal:5000/mesh"
PUBLIC = ("gcr.io", "docker.io", "gke-release", "1.8.6-asm.8")


def _opener(images: PinImages):  # type: ignore[no-untyped-def]
    return lambda _bundle, _trust: images


def _pins(release: Path, images: PinImages, registry: str = R) -> ImagePins:
    return load_pins(
        Path("mesh.images"), [object()], registry, release=release, profile="asm-multicloud", opener=_opener(images)
    )


def _settings(pins: ImagePins | None, *, east_west: bool = False, overlays: tuple[Path, ...] = ()) -> MeshSettings:
    return MeshSettings("cluster1", "net1", "proj-1", overlays=overlays, east_west=east_west, images=pins)


def test_every_image_is_pinned_by_digest_from_the_registry(release: Path) -> None:
    pins = _pins(release, pin_images("pilot", "proxyv2", "install-cni"))
    doc = render_operator(_settings(pins))
    spec, values = doc["spec"], doc["spec"]["values"]
    pilot, proxy = pin_digest("pilot:1.8.6-asm.8"), pin_digest("proxyv2:1.8.6-asm.8")
    assert spec["hub"] == R and values["global"]["hub"] == R and spec["tag"] == UNPINNED_TAG
    assert values["pilot"]["image"] == f"{R}/pilot@{pilot}"
    assert values["global"]["proxy"]["image"] == f"{R}/proxyv2@{proxy}"
    assert values["global"]["proxy_init"]["image"] == f"{R}/proxyv2@{proxy}"
    assert "cni" not in values  # the profile does not enable CNI: its image is not rendered
    assert pinned_refs(doc, pins) == {"pilot": f"{R}/pilot@{pilot}", "proxyv2": f"{R}/proxyv2@{proxy}"}
    # the operator's own settings are still there
    assert values["global"]["meshID"] == "proj-1" and spec["revision"] == "asm-186-8"


def test_nothing_rendered_names_the_public_hub_or_a_mutable_tag(release: Path, tmp_path: Path) -> None:
    pins = _pins(release, pin_images("pilot", "proxyv2"))
    out = tmp_path / "out"
    written = render_install(release, _settings(pins, east_west=True), out)
    assert {p.name for p in written} >= {"cluster.yaml", "eastwest-gateway.yaml"}
    images_seen = []
    for p in written:
        data = p.read_bytes()
        for word in PUBLIC if p.suffix == ".yaml" else PUBLIC[:3]:  # the script names istio-1.8.6-asm.8/bin
            assert word.encode() not in data, (p.name, word)
        text = data.decode()
        images_seen += re.findall(r"image: (\S+)", text)
        assert all(t == UNPINNED_TAG for t in re.findall(r"\btag: (\S+)", text))
    assert images_seen and all(re.fullmatch(re.escape(R) + r"/[a-z0-9-]+@sha256:[0-9a-f]{64}", i) for i in images_seen)


def test_rendering_is_deterministic(release: Path, tmp_path: Path) -> None:
    def render(folder: str) -> dict[str, bytes]:
        pins = _pins(release, PinImages(tuple(reversed(pin_images("proxyv2", "pilot", "install-cni").images))))
        files = render_install(release, _settings(pins, east_west=True), tmp_path / folder)
        return {p.name: p.read_bytes() for p in files}

    a, b = render("a"), render("b")
    assert {k: v for k, v in a.items() if k != "istioctl-install.sh"} == {
        k: v for k, v in b.items() if k != "istioctl-install.sh"
    }  # the script names its own folder; everything else is byte-identical
    assert a["istioctl-install.sh"].replace(b"/a/", b"/b/") == b["istioctl-install.sh"]


def test_east_west_gateway_runs_the_pinned_proxy(release: Path) -> None:
    pins = _pins(release, pin_images("pilot", "proxyv2"))
    doc = eastwest_operator(_settings(pins, east_west=True))
    proxy = f"{R}/proxyv2@{pin_digest('proxyv2:1.8.6-asm.8')}"
    assert doc["spec"]["values"]["global"]["proxy"]["image"] == proxy
    assert doc["spec"]["hub"] == R and doc["spec"]["tag"] == UNPINNED_TAG
    assert pinned_refs(doc, pins, gateway_only=True) == {"proxyv2": proxy}


def test_a_multi_platform_image_is_pinned_by_its_index_digest(release: Path) -> None:
    index = pin_digest("the index")
    images = PinImages((pin_image("pilot"), pin_image("proxyv2", digest=index)))
    assert images.images[1].platforms == ("linux/amd64", "linux/arm64")
    doc = render_operator(_settings(_pins(release, images)))
    assert doc["spec"]["values"]["global"]["proxy"]["image"] == f"{R}/proxyv2@{index}"


def test_cni_enabled_by_an_overlay_or_the_profile_needs_install_cni(release: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "cni.yaml"
    overlay.write_text("spec:\n  components:\n    cni:\n      enabled: true\n")
    pins = _pins(release, pin_images("pilot", "proxyv2", "install-cni"))
    doc = render_operator(_settings(pins, overlays=(overlay,)))
    assert doc["spec"]["values"]["cni"]["image"] == f"{R}/install-cni@{pin_digest('install-cni:1.8.6-asm.8')}"
    short = _pins(release, pin_images("pilot", "proxyv2"))
    with pytest.raises(Refused, match=r"mesh.images: lacks image\(s\) install-cni that this install needs"):
        render_operator(_settings(short, overlays=(overlay,)))
    in_profile = ImagePins(R, Path("b"), short.images, cni_in_profile=True)
    with pytest.raises(Refused, match="install-cni"):
        pin_operator(render_operator(_settings(None)), in_profile)
    off = tmp_path / "off.yaml"
    off.write_text("spec:\n  components:\n    cni:\n      enabled: false\n")
    assert "cni" not in pin_operator(render_operator(_settings(None, overlays=(off,))), in_profile)["spec"]["values"]


def test_the_profile_file_of_the_release_decides_cni(release: Path) -> None:
    profile = next(release.glob("istio-*")) / "manifests" / "profiles" / "asm-multicloud.yaml"
    profile.write_text(profile.read_text() + "  # changed\n")
    with pytest.raises(VerificationError, match="changed since it was extracted"):
        _pins(release, pin_images("pilot", "proxyv2"))


def test_missing_images_are_refused_naming_each(release: Path) -> None:
    pins = _pins(release, pin_images("install-cni"))
    with pytest.raises(Refused, match=r"lacks image\(s\) pilot, proxyv2 that this install needs"):
        render_operator(_settings(pins))


@pytest.mark.parametrize(
    "body,path",
    [
        ("spec:\n  hub: docker.io/istio\n", "spec.hub"),
        ("spec:\n  tag: latest\n", "spec.tag"),
        ("spec:\n  values:\n    pilot:\n      image: pilot\n", "spec.values.pilot.image"),
        (
            "spec:\n  components:\n    ingressGateways:\n    - name: g\n      tag: 1.9\n",
            "spec.components.ingressGateways.0.tag",
        ),
    ],
)
def test_an_overlay_may_not_choose_an_image(release: Path, tmp_path: Path, body: str, path: str) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text(body)
    pins = _pins(release, pin_images("pilot", "proxyv2"))
    with pytest.raises(InvalidInput, match=rf"o.yaml: sets {re.escape(path)}, but --images pins every image"):
        render_operator(_settings(pins, overlays=(overlay,)))
    render_operator(_settings(None, overlays=(overlay,)))  # without --images the overlay is the operator's choice


def test_one_image_per_name_the_releases_tag(release: Path) -> None:
    both = PinImages((*pin_images("pilot", "proxyv2").images, pin_image("proxyv2", "1.9.1-asm.1")))
    pins = _pins(release, both)
    assert {i.name: i.tag for i in pins.images} == {"pilot": "1.8.6-asm.8", "proxyv2": "1.8.6-asm.8"}
    other = _pins(release, PinImages((pin_image("pilot"), pin_image("proxyv2", "1.9.1-asm.1"), pin_image("app", "v2"))))
    with pytest.raises(Refused, match=r"image proxyv2 is \S+:1\.9\.1-asm\.1, but the release"):
        render_operator(_settings(other))
    twice = PinImages((pin_image("pilot"), pin_image("proxyv2"), pin_image("proxyv2", digest=pin_digest("x"))))
    with pytest.raises(Refused, match="2 images named proxyv2"):
        _pins(release, twice)


@pytest.mark.parametrize("digest", ["sha256:" + "A" * 64, "sha256:abc", "sha512:" + "a" * 128, "latest"])
def test_a_record_with_a_bad_digest_is_refused(release: Path, digest: str) -> None:
    with pytest.raises(VerificationError, match="invalid name or digest"):
        _pins(release, PinImages((pin_image("pilot", digest=digest),)))


@pytest.mark.parametrize(
    "value",
    ["https://r.example", "r.example/Mesh", "r.example/mesh:1.8", "r.example/a@sha256", "", "r.example:99999", "r:0"],
)
def test_bad_registry_values(value: str) -> None:
    with pytest.raises(InvalidInput, match="expected HOST\\[:PORT\\]\\[/PATH\\]"):
        check_registry(value)


def test_good_registry_values() -> None:
    assert check_registry("registry.internal:5000/mesh/istio/") == "registry.internal:5000/mesh/istio"
    assert check_registry("127.0.0.1:5000") == "127.0.0.1:5000"
    assert PinnedImage("pilot", "s", "t", pin_digest("p")).ref("r.example") == f"r.example/pilot@{pin_digest('p')}"


def test_rendered_operator_is_valid_yaml_with_one_document(release: Path, tmp_path: Path) -> None:
    pins = _pins(release, pin_images("pilot", "proxyv2"))
    out = tmp_path / "o"
    render_install(release, _settings(pins), out)
    docs = list(yaml.safe_load_all((out / "cluster.yaml").read_bytes()))
    assert len(docs) == 1 and docs[0]["kind"] == "IstioOperator"


def test_an_image_the_profile_renames_is_the_one_pinned(release: Path) -> None:
    proxy = ("global", "proxy", "image")
    images = (*pin_images("pilot", "proxyv2").images, pin_image("proxyv2-distroless"))
    pins = replace(_pins(release, PinImages(images)), names=((proxy, "proxyv2-distroless"),))
    doc = pin_operator(render_operator(_settings(None)), pins)
    values = doc["spec"]["values"]
    assert (
        values["global"]["proxy"]["image"] == f"{R}/proxyv2-distroless@{pin_digest('proxyv2-distroless:1.8.6-asm.8')}"
    )
    assert values["global"]["proxy_init"]["image"] == f"{R}/proxyv2@{pin_digest('proxyv2:1.8.6-asm.8')}"
    assert _image_name("gcr.io/x/pilot:1.8") == "pilot" and _image_name("r:5000/a/pilot@sha256:ab") == "pilot"


def test_a_control_plane_without_istiod_needs_no_pilot(release: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "remote.yaml"
    overlay.write_text("spec:\n  components:\n    pilot:\n      enabled: false\n")
    pins = _pins(release, pin_images("proxyv2"))
    doc = render_operator(_settings(pins, overlays=(overlay,)))
    assert "pilot" not in doc["spec"]["values"] and pinned_refs(doc, pins).keys() == {"proxyv2"}
    no_pilot = ImagePins(R, Path("b"), pins.images, pilot_in_profile=False)
    assert "pilot" not in pin_operator(render_operator(_settings(None)), no_pilot)["spec"]["values"]
