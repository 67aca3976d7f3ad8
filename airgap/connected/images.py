"""Images across the gap: ``images list``, ``pull``, ``verify`` and ``push`` (docs/images.md).

Trust: the release folder is trusted only after ``release extract`` verified it (its profile files
are re-checked against RELEASE.json before they are read). Registries are not trusted: what
``images pull`` fetches is re-hashed against its digest before it is sealed and signed. A bundle is
not trusted until :func:`open_images` returns; ``images push`` verifies every byte first, from a
private copy made in the same pass, and pushes only that copy. The wire is skopeo
(:mod:`airgap.connected.skopeo`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.connected.skopeo import RegistryAccess, fetch_layers, inspect_raw, push_dir
from airgap.core.atomic import create_file, write_new
from airgap.core.history import IMAGES_PUSH, record_event
from airgap.core.images_bundle import ImageRecord, ImagesManifest, VerifiedImages, verify_images
from airgap.core.images_seal import Wanted, blob_path, seal_images
from airgap.core.keys import PrivateKey, PublicKey
from airgap.core.limits import DEFAULT_LIMITS, MAX_OCI_MANIFEST, Limits
from airgap.core.oci import INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, Parsed, check_platform, digest_of, parse_manifest
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.scratch import scratch_dir
from airgap.errors import (
    DigestMismatch,
    InvalidInput,
    Malformed,
    NotFound,
    Refused,
    UnsafePath,
    WouldOverwrite,
)

__all__ = ["ImageRecord", "VerifiedImages", "list_images", "open_images", "pull_images", "push_images"]

_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    """``REGISTRY/PATH/NAME:TAG``: ``repository`` is everything before ``:TAG``."""

    repository: str
    tag: str

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def parse_reference(value: str) -> ImageRef:
    """``REGISTRY/PATH/NAME:TAG`` (a registry host is required, a tag too; exit 3 otherwise)."""
    repo, sep, tag = value.rpartition(":")
    if not sep or "/" in tag or "@" in value:
        raise Malformed(f"image {value[:200]!a}: expected REGISTRY/PATH/NAME:TAG (a tag, no digest)")
    host, _, path = repo.partition("/")
    if not _HOST.match(host) or not path or not _REPO.match(path) or not _TAG.match(tag):
        raise Malformed(f"image {value[:200]!a}: expected REGISTRY/PATH/NAME:TAG")
    return ImageRef(repo, tag)


def parse_registry(value: str) -> tuple[str, str]:
    """``HOST[:PORT][/PATH]`` -> (host, path) (exit 3 otherwise)."""
    host, _, path = value.partition("/")
    path = path.strip("/")
    port = host.rpartition(":")[2] if ":" in host else "443"
    bad_port = not port.isdigit() or not 0 < int(port) <= 65535
    if not _HOST.match(host) or bad_port or (path and not _REPO.match(path)) or "@" in value:
        raise Malformed(f"registry {value[:200]!a}: expected HOST[:PORT][/PATH]")
    return host, path


# -- images list ----------------------------------------------------------------------------------------
def list_images(release: Path, profile: str | None = None) -> list[ImageRef]:
    """The images an install of the verified ``release`` with ``profile`` needs (its own files)."""
    from airgap.connected.release_images import release_image_refs

    return [parse_reference(r) for r in release_image_refs(release, profile)]


# -- images pull ----------------------------------------------------------------------------------------
def _guess_type(data: bytes, announced: str | None, source: str) -> Parsed:
    from airgap.core.canonical import load_json

    doc = load_json(data, what=f"{source}: the registry's manifest", max_bytes=MAX_OCI_MANIFEST)
    media_type = doc.get("mediaType") if isinstance(doc, dict) else None
    if media_type is None and isinstance(doc, dict):
        media_type = announced or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
    return parse_manifest(data, source=source, expected_type=str(media_type))


def _store(work: Path, digest: str, data: bytes) -> None:
    path = blob_path(work, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with os.fdopen(create_file(tmp, 0o644), "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)


def _have(work: Path, digest: str, cap: int = MAX_OCI_MANIFEST) -> bytes | None:
    """Bytes the work layout already holds for ``digest`` (skopeo stored them), if they are that digest."""
    path = blob_path(work, digest)
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except FileNotFoundError:
        return None
    return data if len(data) <= cap and digest_of(data) == digest else None


def _fetch_manifest(repo: str, digest: str, media_type: str, work: Path, access: RegistryAccess) -> Parsed:
    """A manifest or index and (for a manifest) its config, by digest, into the work layout: the bytes
    skopeo stored if they hash right (OCI types, which it keeps as they are), else ``inspect --raw``."""
    data = _have(work, digest) or inspect_raw(f"{repo}@{digest}", access)
    if digest_of(data) != digest:
        raise DigestMismatch(f"{repo}@{digest}: the registry served bytes that are not that digest")
    parsed = parse_manifest(data, source=f"{repo}@{digest}", expected_type=media_type)
    _store(work, digest, data)
    if not parsed.is_index:
        config = parsed.references[0]
        cfg = _have(work, config.digest) or inspect_raw(f"{repo}@{digest}", access, config=True)
        if digest_of(cfg) != config.digest:
            raise DigestMismatch(f"{repo}@{digest}: the registry served a config that is not {config.digest}")
        _store(work, config.digest, cfg)
    return parsed


def _pull_one(
    ref: ImageRef, pull_from: str, work: Path, access: RegistryAccess, platforms: Sequence[str]
) -> tuple[str, str]:
    """Fetch one image into the work layout, pinned by the digest its tag names now; its top-level
    (digest, media type). Layers first (skopeo, by digest), then the exact manifest bytes."""
    data = inspect_raw(str(ImageRef(pull_from, ref.tag)), access)
    digest = digest_of(data)
    top = _guess_type(data, None, f"{pull_from}:{ref.tag}")
    if top.is_index and platforms:
        chosen = [d for d in top.references if d.platform in platforms]
        if not chosen:
            raise InvalidInput(f"{ref}: has no platform {', '.join(platforms)} (it has {', '.join(top.platforms)})")
        if len(chosen) != len(top.references) and len(chosen) != 1:
            raise InvalidInput(
                f"{ref}: choose one --platform or all of them: an index cut to several platforms "
                "no longer has its digest and a registry would refuse it"
            )
        if len(chosen) == 1:
            fetch_layers(f"{pull_from}@{chosen[0].digest}", work, f"{ref.name}-{ref.tag}", access, None)
            child = _fetch_manifest(pull_from, chosen[0].digest, chosen[0].media_type, work, access)
            return chosen[0].digest, child.media_type
    fetch_layers(f"{pull_from}@{digest}", work, f"{ref.name}-{ref.tag}", access, None)
    _store(work, digest, data)
    if top.is_index:
        for child_ref in top.references:
            _fetch_manifest(pull_from, child_ref.digest, child_ref.media_type, work, access)
    else:
        single = _fetch_manifest(pull_from, digest, top.media_type, work, access)
        _check_single_platform(ref, work, single, platforms)
    return digest, top.media_type


def _check_single_platform(ref: ImageRef, work: Path, parsed: Parsed, platforms: Sequence[str]) -> None:
    """A one-platform image pulled with ``--platform``: its config must name one of them."""
    from airgap.core.canonical import load_json

    if not platforms:
        return
    raw = blob_path(work, parsed.references[0].digest).read_bytes()
    config = load_json(raw, what=f"{ref}: image config", max_bytes=MAX_OCI_MANIFEST)
    if not isinstance(config, dict):
        raise Malformed(f"{ref}: its image config is not a JSON object")
    parts = [config.get("os"), config.get("architecture")] + ([config["variant"]] if config.get("variant") else [])
    have = "/".join(str(p) for p in parts)
    if have not in platforms:
        raise InvalidInput(f"{ref}: a single-platform image for {have[:60]!a}, not {', '.join(platforms)}")


@dataclass(frozen=True)
class PullRequest:
    refs: tuple[ImageRef, ...]
    pull_from: str | None  # replaces the registry/path of every image: a mirror of the hub
    platforms: tuple[str, ...]
    split: int | None


def _open_base(since: Path, key: PrivateKey, work: Path) -> VerifiedImages:
    """Verify the base bundle with the signing key's public half, and seed the work layout with
    the blobs it carries (from the copy verified in the same pass): skopeo does not fetch a blob
    the layout has, so a delta downloads only what the base lacks."""
    with scratch_dir(".airgap-base-", work) as seed:
        base = verify_images(Path(since), [key.public_key()], extract=seed)
        target = work / "blobs" / "sha256"
        target.mkdir(parents=True, exist_ok=True)
        for blob in seed.iterdir():
            if not (target / blob.name).exists():
                os.replace(blob, target / blob.name)
        return base


def pull_images(
    request: PullRequest,
    *,
    key: PrivateKey,
    out: Path,
    access: RegistryAccess,
    since: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> ImagesManifest:
    """Pull every image into a signed bundle ``out``. Resumable: the work folder beside ``out``
    (``.OUT.pull``) keeps what was fetched and verified until the bundle is written."""
    out = Path(out)
    if out.exists():
        raise WouldOverwrite(f"{out}: already exists; refusing to overwrite")
    for p in request.platforms:
        check_platform(p)
    names = [(r.name, r.tag) for r in request.refs]
    if len(set(names)) != len(names):
        raise InvalidInput("two images have the same name and tag; they would be pushed to the same place")
    if not out.parent.is_dir():
        raise NotFound(f"{out.parent}: folder not found (for --out)")
    work = out.parent / f".{out.name}.pull"
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise UnsafePath(f"{work}: the pull's work folder is a link or not a folder; refusing")
    work.mkdir(mode=0o700, exist_ok=True)
    base = None if since is None else _open_base(since, key, work)
    tops = []
    try:
        for ref in request.refs:
            pull_from = f"{request.pull_from}/{ref.name}" if request.pull_from else ref.repository
            digest, media_type = _pull_one(ref, pull_from, work, access, request.platforms)
            tops.append((Wanted(ref.name, str(ref), ref.tag), digest, media_type))
        manifest = seal_images(work, tops, key=key, out=out, base=base, split=request.split, progress=progress)
    except BaseException:
        if not any(p.is_file() for p in work.rglob("*")):
            shutil.rmtree(work, ignore_errors=True)  # nothing fetched: nothing to resume from
        raise
    shutil.rmtree(work, ignore_errors=True)
    return manifest


# -- images verify ----------------------------------------------------------------------------------
def open_images(
    bundle: Path, trust: Sequence[PublicKey], limits: Limits = DEFAULT_LIMITS, *, progress: Progress = NO_PROGRESS
) -> VerifiedImages:
    """Verify an images bundle completely (signature, parts, every blob, every reference) or raise.

    Raises :class:`VerificationError` (exit 1), :class:`InvalidInput` (3) or :class:`Refused` (4).
    """
    return verify_images(Path(bundle), trust, limits=limits, progress=progress)


# -- images push ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushResult:
    bundle: VerifiedImages
    registry: str
    images: tuple[dict[str, str], ...]  # {"name", "digest", "reference"}


def _image_dir(blobs: Path, folder: Path, image: ImageRecord) -> None:
    """A skopeo ``dir:`` folder for one image: hard links to the verified blobs it needs."""
    folder.mkdir()
    write_new(folder / "version", b"Directory Transport Version: 1.1\n")
    os.link(blobs / image.digest[7:], folder / "manifest.json")
    todo = [(image.digest, image.media_type)]
    while todo:
        digest, media_type = todo.pop()
        data = (blobs / digest[7:]).read_bytes()[: MAX_OCI_MANIFEST + 1]
        parsed = parse_manifest(data, source=digest, expected_type=media_type)
        if media_type in INDEX_TYPES:
            for child in parsed.references:
                with contextlib.suppress(FileExistsError):
                    os.link(blobs / child.hex, folder / f"{child.hex}.manifest.json")
                todo.append((child.digest, child.media_type))
            continue
        for ref in parsed.references:
            if (blobs / ref.hex).exists() and not (folder / ref.hex).exists():
                os.link(blobs / ref.hex, folder / ref.hex)


def _private_dir() -> contextlib.AbstractContextManager[Path]:
    """The verified copy of the bundle's blobs that skopeo pushes from (swept if a killed push left it)."""
    return scratch_dir("airgap-push-")


def _check_base(verified: VerifiedImages, host: str, path: str, client: Any) -> None:
    """A delta onto a registry that lacks its base: refused before anything is pushed (exit 4)."""
    missing = [
        i.digest
        for i in verified.manifest.inherited
        if not client.has_blob("/".join(p for p in (path, i.image) if p), i.digest)
    ]
    if missing:
        base = verified.base.bundle_id if verified.base else "?"
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise Refused(
            f"{host}: lacks {len(missing)} blob(s) this delta bundle leaves to its base bundle {base}: {shown}; "
            "push that bundle first; nothing pushed"
        )


def push_images(
    bundle: Path,
    trust: Sequence[PublicKey],
    registry: str,
    *,
    access: RegistryAccess,
    state: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> PushResult:
    """Verify every byte of ``bundle``, then push each image to ``REGISTRY/PATH/NAME`` by digest and tag."""
    from airgap.connected.registry_check import RegistryClient

    host, path = parse_registry(registry)
    with _private_dir() as tmp:
        blobs = tmp / "blobs"
        blobs.mkdir()
        verified = verify_images(Path(bundle), trust, extract=blobs, progress=progress)
        client = RegistryClient(host, access)
        client.check_access()
        _check_base(verified, host, path, client)
        pushed = []
        for n, image in enumerate(verified.images):
            repo = "/".join(p for p in (host, path, image.name) if p)
            folder = tmp / f"image-{n}"
            _image_dir(blobs, folder, image)
            push_dir(folder, f"{repo}:{image.tag}", access, tmp / f"digest-{n}")
            served = (tmp / f"digest-{n}").read_text().strip()
            if served != image.digest:
                raise DigestMismatch(f"{repo}: the registry names the pushed image {served}, not {image.digest}")
            pushed.append({"name": image.name, "digest": image.digest, "reference": f"{repo}@{image.digest}"})
    record_event(
        IMAGES_PUSH,
        {
            "bundle_id": verified.bundle_id,
            "bundle_sha256": verified.manifest_sha256,
            "signer": verified.signer_key_id,
            "registry": "/".join(p for p in (host, path) if p),
            "images": pushed,
            "base": verified.base.bundle_id if verified.base else None,
        },
        state=state,
    )
    return PushResult(verified, "/".join(p for p in (host, path) if p), tuple(pushed))
