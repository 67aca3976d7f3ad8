"""Stand-ins for the images helper's verified bundle, for the fast pinned-install tests.

``airgap.connected.images.open_images`` returns ``VerifiedImages`` whose ``images`` are
``ImageRecord`` values. :class:`PinImage` / :class:`PinImages` have the same fields, so a test can
state exactly which images, tags and digests a bundle holds (several of one name, a bad digest, an
index digest) without sealing one; the ``pin_bundle`` fixture writes a small JSON stand-in and
replaces :func:`airgap.connected.pinning._open_images` (the one call site) with a reader that, like
the real verifier, refuses (exit 1) when no ``--trust`` key is the signer's. The real bundle, push
and install are tested end to end in ``tests/cli/test_mesh_pin_images_cli.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HEX = "0123456789abcdef"


def pin_digest(seed: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


@dataclass(frozen=True)
class PinImage:
    name: str
    source: str
    tag: str
    digest: str
    media_type: str = "application/vnd.oci.image.index.v1+json"
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64")


@dataclass(frozen=True)
class PinImages:
    images: tuple[PinImage, ...]


def pin_image(name: str, tag: str = "1.8.6-asm.8", digest: str | None = None) -> PinImage:
    return PinImage(name, f"gcr.io/gke-release/asm/{name}:{tag}", tag, digest or pin_digest(f"{name}:{tag}"))


def pin_images(*names: str, tag: str = "1.8.6-asm.8") -> PinImages:
    return PinImages(tuple(pin_image(n, tag) for n in names))


def write_pin_bundle(path: Path, images: PinImages, signer_pub: Path) -> Path:
    doc = {
        "signer": signer_pub.read_text(),
        "images": [vars(i) | {"platforms": list(i.platforms)} for i in images.images],
    }
    path.write_text(json.dumps(doc))
    return path


def _read_pin_bundle(bundle: Path, trust: Sequence[Any]) -> PinImages:
    from cryptography.hazmat.primitives import serialization

    from airgap.errors import VerificationError

    doc = json.loads(Path(bundle).read_text())
    signer = serialization.load_pem_public_key(doc["signer"].encode())
    raw = signer.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not any(k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == raw
               for k in trust):  # fmt: skip
        raise VerificationError(f"{bundle}: not signed by a trusted key")
    return PinImages(tuple(PinImage(**(i | {"platforms": tuple(i["platforms"])})) for i in doc["images"]))


@pytest.fixture
def pin_bundle(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, PinImages, Path], Path]:
    """``make(path, images, signer_pub)``: a stand-in images bundle that the opener reads."""
    import airgap.connected.pinning as pinning

    monkeypatch.setattr(pinning, "_open_images", _read_pin_bundle)
    return write_pin_bundle
