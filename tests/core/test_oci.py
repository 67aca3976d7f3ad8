"""OCI / Docker v2 manifests and indexes: media types, caps, descriptors, platforms."""

from __future__ import annotations

import json

import pytest

from airgap.core.limits import MAX_OCI_DESCRIPTORS, MAX_OCI_MANIFEST
from airgap.core.oci import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, check_platform, digest_of, parse_manifest
from airgap.errors import InvalidInput

D = "sha256:" + "a" * 64
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 10}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "b" * 64, "size": 20}


def _manifest(**over: object) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": [LAYER], **over}
    ).encode()


def test_a_manifest_lists_config_then_layers() -> None:
    p = parse_manifest(_manifest(), source="m")
    assert [d.digest for d in p.references] == [D, "sha256:" + "b" * 64] and not p.is_index


def test_an_index_names_its_platforms() -> None:
    child = {
        "mediaType": OCI_MANIFEST,
        "digest": D,
        "size": 5,
        "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
    }
    p = parse_manifest(
        json.dumps({"schemaVersion": 2, "manifests": [child]}).encode(), source="i", expected_type=OCI_INDEX
    )
    assert p.is_index and p.platforms == ("linux/arm/v7",)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_manifest(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws"), "not an OCI or Docker v2"),
        (_manifest(schemaVersion=1), "not an OCI or Docker v2"),
        (_manifest(layers=[{**LAYER, "mediaType": "application/x-evil"}]), "not an OCI or Docker v2"),
        (_manifest(layers=[{**LAYER, "digest": "sha512:" + "a" * 128}]), "not a sha256 digest"),
        (_manifest(layers=[{**LAYER, "digest": "sha256:" + "A" * 64}]), "not a sha256 digest"),
        (_manifest(layers=[{**LAYER, "size": -1}]), "not a size"),
        (_manifest(layers=[{**LAYER, "size": True}]), "not a size"),
        (_manifest(layers=[LAYER] * (MAX_OCI_DESCRIPTORS + 1)), "more than"),
        (b'{"schemaVersion": 2, "schemaVersion": 2}', "not a JSON manifest"),  # a duplicate key
        (b"\xff", "not a JSON manifest"),
        (b"[]", "JSON object"),
        (_manifest()[:-1] + b" " * MAX_OCI_MANIFEST + b"}", "size limit"),
    ],
)
def test_bad_manifests_are_exit_3(data: bytes, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_manifest(data, source="m")


def test_a_manifest_whose_type_disagrees_with_its_descriptor_is_exit_3() -> None:
    with pytest.raises(InvalidInput, match="its descriptor"):
        parse_manifest(_manifest(), source="m", expected_type=DOCKER_LIST)


def test_platform_values() -> None:
    assert check_platform("linux/amd64") == "linux/amd64"
    for bad in ("linux", "Linux/amd64", "linux/amd64/v8/x", "linux/../x"):
        with pytest.raises(InvalidInput):
            check_platform(bad)


def test_digest_of_is_the_registry_name() -> None:
    assert digest_of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
