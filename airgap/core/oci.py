"""OCI image manifests, indexes and descriptors: parse untrusted bytes under caps.

Trust: nothing. Every function here takes bytes a registry served (or a bundle carried) and
either returns a parsed, shape-checked value or raises. A digest is checked by the caller that
holds the bytes (:func:`digest_of`); here a descriptor is only checked for form. Media types are
the OCI image-spec v1 ones and Docker's v2 schema 2 ones; anything else (schema 1, artifacts
we do not know) is :class:`~airgap.errors.InvalidInput`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from airgap.core.canonical import load_json
from airgap.core.limits import MAX_OCI_DESCRIPTORS, MAX_OCI_MANIFEST
from airgap.errors import Malformed, TooLarge

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"})
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_PLATFORM_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: str  # "sha256:<64 hex>"
    size: int
    platform: str | None = None  # "os/arch[/variant]" for an index entry that names one

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Parsed:
    """One manifest or index: its media type, and what it references (children or config+layers)."""

    media_type: str
    references: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(d.platform for d in self.references if d.platform)


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the name a registry gives these bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: Any, *, source: str) -> str:
    """A ``sha256:<64 lowercase hex>`` digest, or exit 3 (no other algorithm is carried)."""
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise Malformed(f"{source}: {str(value)[:80]!a} is not a sha256 digest")
    return value


def _platform(doc: Any, *, source: str) -> str | None:
    if doc is None:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("os"), str) or not isinstance(doc.get("architecture"), str):
        raise Malformed(f"{source}: malformed platform in an index")
    parts = [doc["os"], doc["architecture"]] + ([doc["variant"]] if isinstance(doc.get("variant"), str) else [])
    if not all(_PLATFORM_PART.match(p) for p in parts):
        raise Malformed(f"{source}: platform {'/'.join(parts)[:80]!a} has characters a platform cannot have")
    return "/".join(parts)


def parse_descriptor(doc: Any, *, source: str, allowed: frozenset[str]) -> Descriptor:
    """One descriptor object; its media type must be one of ``allowed`` (exit 3 otherwise)."""
    if not isinstance(doc, dict):
        raise Malformed(f"{source}: a descriptor is not an object")
    media_type, size = doc.get("mediaType"), doc.get("size")
    if not isinstance(media_type, str) or media_type not in allowed:
        raise Malformed(f"{source}: media type {str(media_type)[:100]!a} is not an OCI or Docker v2 image type")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Malformed(f"{source}: descriptor size {str(size)[:40]!a} is not a size")
    digest = check_digest(doc.get("digest"), source=source)
    return Descriptor(media_type, digest, size, _platform(doc.get("platform"), source=source))


def _strict_object(data: bytes, *, source: str) -> dict[str, Any]:
    """The one strict JSON reader (duplicate keys, NaN, depth refused), then: an object."""
    doc = load_json(data, what=source, max_bytes=MAX_OCI_MANIFEST, invalid="is not a JSON manifest")
    if not isinstance(doc, dict):
        raise Malformed(f"{source}: a manifest is a JSON object")
    return doc


def parse_manifest(data: bytes, *, source: str, expected_type: str | None = None) -> Parsed:
    """Parse an image manifest or index (bytes as served, at most :data:`MAX_OCI_MANIFEST`).

    ``expected_type`` is the media type the referring descriptor (or the registry) announced;
    when the document names its own type it must agree.
    """
    if len(data) > MAX_OCI_MANIFEST:
        raise TooLarge(f"{source}: manifest is over the size limit ({MAX_OCI_MANIFEST} bytes)")
    doc = _strict_object(data, source=source)
    media_type = doc.get("mediaType", expected_type)
    if expected_type is not None and media_type != expected_type:
        raise Malformed(
            f"{source}: manifest says media type {str(media_type)[:100]!a}, its descriptor {expected_type!a}"
        )
    if doc.get("schemaVersion") != 2 or media_type not in INDEX_TYPES | MANIFEST_TYPES:
        raise Malformed(f"{source}: media type {str(media_type)[:100]!a} is not an OCI or Docker v2 manifest or index")
    if media_type in INDEX_TYPES:
        items = doc.get("manifests")
        allowed = MANIFEST_TYPES | INDEX_TYPES
        if not isinstance(items, list):
            raise Malformed(f"{source}: index has no manifests list")
    else:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise Malformed(f"{source}: manifest has no layers list")
        config = parse_descriptor(doc.get("config"), source=source, allowed=CONFIG_TYPES)
        items, allowed = layers, LAYER_TYPES
    if len(items) > MAX_OCI_DESCRIPTORS:
        raise TooLarge(f"{source}: more than {MAX_OCI_DESCRIPTORS} descriptors")
    refs = tuple(parse_descriptor(d, source=source, allowed=allowed) for d in items)
    if media_type in MANIFEST_TYPES:
        refs = (config, *refs)
    return Parsed(media_type, refs)


def check_platform(value: str) -> str:
    """A ``--platform`` value: ``os/arch`` or ``os/arch/variant``, lowercase (exit 3 otherwise)."""
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(_PLATFORM_PART.match(p) for p in parts):
        raise Malformed(f"platform {value[:80]!a}: expected OS/ARCH or OS/ARCH/VARIANT (linux/amd64)")
    return value
