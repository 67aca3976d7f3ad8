"""images list: the images a release names, from its own profile and chart files."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.connected.release_images import release_image_refs
from airgap.core.release import extract_release
from airgap.errors import InvalidInput, VerificationError
from tests import release_fixtures
from tests.release_fixtures import make_signed_release


def _release(tmp: Path, version: str = "1.8.6", **profiles: str) -> Path:
    """A verified, extracted release whose Istio profiles are the fixture's, with ``profiles`` replacing some."""
    saved = dict(release_fixtures.ISTIO_PROFILES)
    try:
        release_fixtures.ISTIO_PROFILES.update({f"{k.replace('_', '-')}.yaml": v for k, v in profiles.items()})
        tarball, sig, pub = make_signed_release(
            tmp / "rel", version=version, istio_profiles=True, hub="hub.example/istio"
        )
    finally:
        release_fixtures.ISTIO_PROFILES.clear()
        release_fixtures.ISTIO_PROFILES.update(saved)
    extract_release(tarball, tmp / "out", sig, key=pub)
    return tmp / "out"


def test_default_profile_names_pilot_and_the_proxy(tmp_path: Path) -> None:
    assert release_image_refs(_release(tmp_path)) == [
        "hub.example/istio/pilot:1.8.6",
        "hub.example/istio/proxyv2:1.8.6",
    ]


def test_cni_profile_adds_install_cni_from_the_chart_values(tmp_path: Path) -> None:
    refs = release_image_refs(_release(tmp_path), "cni")
    assert refs[-1] == "hub.example/istio/install-cni:1.8.6"


def test_asm_line_default_profile_and_its_own_hub(tmp_path: Path) -> None:
    refs = release_image_refs(_release(tmp_path, version="1.8.6-asm.8"))  # asm-multicloud: profile empty + charts
    assert refs == ["gcr.io/gke-release/asm/pilot:1.8.6-asm.8", "gcr.io/gke-release/asm/proxyv2:1.8.6-asm.8"]


def test_a_component_hub_and_a_whole_reference_win(tmp_path: Path) -> None:
    custom = """spec:
  values:
    pilot:
      hub: other.example/mesh
      tag: 1.8.6-patched
    global:
      proxy:
        image: mirror.example/proxies/proxyv2:1.8.6-distroless
"""
    refs = release_image_refs(_release(tmp_path, custom=custom), "custom")
    assert refs[:2] == ["other.example/mesh/pilot:1.8.6-patched", "mirror.example/proxies/proxyv2:1.8.6-distroless"]


def test_a_release_that_names_no_pilot_image_is_an_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = release_fixtures.ISTIO_PROFILES["default.yaml"].replace("    pilot:\n      image: pilot\n", "")
    charts = release_fixtures.DISCOVERY_CHART_VALUES.replace("pilot:\n  image: pilot\n", "")
    monkeypatch.setattr(release_fixtures, "DISCOVERY_CHART_VALUES", charts)
    with pytest.raises(InvalidInput, match=r"values\.pilot\.image"):
        release_image_refs(_release(tmp_path, default=default), "default")


def test_an_unknown_profile_is_exit_3(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no profile 'ambient'"):
        release_image_refs(_release(tmp_path), "ambient")


def test_profiles_that_base_on_each_other_in_a_loop_are_exit_3(tmp_path: Path) -> None:
    loop_a = "spec:\n  profile: loop-b\n"
    loop_b = "spec:\n  profile: loop-a\n"
    with pytest.raises(InvalidInput, match="loop"):
        release_image_refs(_release(tmp_path, loop_a=loop_a, loop_b=loop_b), "loop-a")


def test_a_profile_changed_after_extraction_is_exit_1(tmp_path: Path) -> None:
    out = _release(tmp_path)
    profile = next(out.glob("istio-*/manifests/profiles/default.yaml"))
    profile.write_text(profile.read_text().replace("hub.example", "evil.example"))
    with pytest.raises(VerificationError, match="changed"):
        release_image_refs(out)


def test_the_catalog_adds_an_image_a_release_line_needs_but_its_files_do_not_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from airgap.connected import catalog

    line = dataclasses.replace(catalog.CATALOG["istio-1.8"], images=("ztunnel",))
    monkeypatch.setitem(catalog.CATALOG, "istio-1.8", line)
    assert release_image_refs(_release(tmp_path))[-1] == "hub.example/istio/ztunnel:1.8.6"
