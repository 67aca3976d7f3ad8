"""Seal an images bundle from an OCI image layout (``bundles/SPEC.md`` §10).

Trust: the layout holds what a registry served; nothing in it is trusted. Every manifest, index
and config read here is re-hashed against the digest it is named by before it is parsed, and every
blob is hashed as it is copied into the bundle; a blob whose bytes are not its digest is removed
from the layout (so a re-run fetches it again) and the seal fails with exit 1. Manifests and
indexes are copied byte for byte, so digests never change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airgap.core.atomic import AtomicFile, create_file, fsync_dir, publish
from airgap.core.bundle.manifest import format_time, sign_manifest
from airgap.core.bundle.ustar import BundleWriter
from airgap.core.canonical import load_json
from airgap.core.images_bundle import (
    LAYOUT_INDEX,
    OCI_LAYOUT,
    OCI_LAYOUT_BYTES,
    Base,
    ImageRecord,
    ImagesManifest,
    Inherited,
    Member,
    Part,
    VerifiedImages,
    layout_index,
    new_bundle_id,
)
from airgap.core.keys import PrivateKey, spki_sha256
from airgap.core.limits import MAX_IMAGE_MEMBERS, MAX_OCI_MANIFEST
from airgap.core.oci import INDEX_TYPES, MANIFEST_TYPES, check_platform, parse_manifest
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.scratch import scratch_dir
from airgap.errors import AirgapError, DigestMismatch, InvalidInput, NotFound, TooLarge, WouldOverwrite

FAT32_MAX = 4 * 1024**3 - 1


@dataclass(frozen=True)
class Wanted:
    """One image to seal: where it came from and how the layout names it (``NAME:TAG``)."""

    name: str
    source: str
    tag: str

    @property
    def ref_name(self) -> str:
        return f"{self.name}:{self.tag}"


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def read_verified_blob(layout: Path, digest: str, *, cap: int = MAX_OCI_MANIFEST) -> bytes:
    """A small blob of the layout whose bytes hash to ``digest`` (else it is removed: exit 1)."""
    path = blob_path(layout, digest)
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: blob {digest} is missing from the pulled layout") from exc
    if len(data) > cap:
        raise TooLarge(f"{path}: manifest {digest} is over the size limit ({cap} bytes)")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        path.unlink()
        raise DigestMismatch(f"{path}: the source served bytes that are not {digest} (removed; a re-run fetches it)")
    return data


@dataclass
class _Plan:
    records: list[ImageRecord]
    order: list[str]  # blob digests, manifests first, each once
    sizes: dict[str, int]
    inherited: dict[str, Inherited]
    manifests: set[str]


def _plan_image(
    layout: Path, w: Wanted, digest: str, media_type: str, plan: _Plan, base: VerifiedImages | None
) -> None:
    """Walk one image from its top-level digest: manifests and configs are always carried (small,
    and what verification parses); layers the base bundle carried are inherited."""
    tops: list[tuple[str, str]] = [(digest, media_type)]
    later: list[tuple[str, bool]] = []
    platforms: list[str] = []
    while tops:
        d, mt = tops.pop(0)
        data = read_verified_blob(layout, d)
        parsed = parse_manifest(data, source=f"{w.source}: {d}", expected_type=mt)
        plan.manifests.add(d)
        _add(plan, d, len(data), None)
        if parsed.is_index:
            tops.extend((r.digest, r.media_type) for r in parsed.references)
            if d == digest:
                platforms.extend(parsed.platforms)
            continue
        config = parsed.references[0]
        if d == digest:
            platforms.extend(_config_platform(read_verified_blob(layout, config.digest)))
        later.extend((r.digest, r is not config) for r in parsed.references)
        for r in parsed.references:
            plan.sizes.setdefault(r.digest, r.size)
    for d, inheritable in later:
        _add(plan, d, plan.sizes[d], base if inheritable else None)
    plan.records.append(ImageRecord(w.name, w.source, w.tag, digest, media_type, tuple(platforms)))


def _add(plan: _Plan, digest: str, size: int, base: VerifiedImages | None) -> None:
    if digest in plan.order or digest in plan.inherited:
        return
    if base is not None and digest in base.blob_digests():
        plan.inherited[digest] = Inherited(digest, size, base.owners[digest])
        return
    plan.order.append(digest)
    plan.sizes[digest] = size


def _config_platform(data: bytes) -> list[str]:
    try:
        doc = load_json(data, what="image config", max_bytes=MAX_OCI_MANIFEST)
    except AirgapError:
        return []  # a config that is not JSON names no platform; verification parses it the same way
    if not isinstance(doc, dict) or not isinstance(doc.get("os"), str) or not isinstance(doc.get("architecture"), str):
        return []
    variant = doc.get("variant")
    return ["/".join([doc["os"], doc["architecture"]] + ([variant] if isinstance(variant, str) else []))]


def plan_bundle(layout: Path, tops: Sequence[tuple[Wanted, str, str]], base: VerifiedImages | None) -> _Plan:
    """What the bundle will carry: each image's record, and its blobs in order (manifests first).

    ``tops``: per image, its top-level digest and media type (as the source registry served them)."""
    plan = _Plan([], [], {}, {}, set())
    for w, digest, media_type in tops:
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            raise InvalidInput(f"{w.source}: media type {media_type[:100]!a} is not an OCI or Docker v2 image type")
        _plan_image(layout, w, digest, media_type, plan, base)
    plan.order = [d for d in plan.order if d in plan.manifests] + [d for d in plan.order if d not in plan.manifests]
    if len(plan.order) > MAX_IMAGE_MEMBERS:
        raise InvalidInput(f"more than {MAX_IMAGE_MEMBERS} blobs in one images bundle")
    return plan


# -- writing -----------------------------------------------------------------------------------------
class _PartWriter:
    """A file-like sink that cuts what is written into ``NAME.partNNN`` files of at most ``size`` bytes."""

    def __init__(self, folder: Path, stem: str, size: int) -> None:
        self.folder, self.stem, self.size = folder, stem, size
        self.parts: list[Part] = []
        self._fh: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._written = 0

    def _rotate(self) -> None:
        self._close()
        name = f"{self.stem}.part{len(self.parts) + 1:03d}"
        if len(self.parts) >= 999:
            raise InvalidInput("more than 999 parts: give --split a larger size")
        self._fh = os.fdopen(create_file(self.folder / name, 0o644), "wb")
        self.parts.append(Part(name, 0, ""))
        self._hash, self._written = hashlib.sha256(), 0

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            self.parts[-1] = Part(self.parts[-1].name, self._written, self._hash.hexdigest())

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        while view:
            if self._fh is None or self._written == self.size:
                self._rotate()
            assert self._fh is not None
            n = min(len(view), self.size - self._written)
            self._fh.write(view[:n])
            self._hash.update(view[:n])
            self._written += n
            view = view[n:]
        return len(data)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def fileno(self) -> int:
        assert self._fh is not None
        return self._fh.fileno()

    def finish(self) -> list[Part]:
        self._close()
        return self.parts


def _write_members(out: IO[bytes], layout: Path, plan: _Plan, index: bytes, progress: Progress) -> list[Member]:
    writer = BundleWriter(out, progress=progress)
    members = [writer.add_bytes(OCI_LAYOUT, OCI_LAYOUT_BYTES), writer.add_bytes(LAYOUT_INDEX, index)]
    result = [Member(m.path, m.size, m.sha256) for m in members]
    for digest in plan.order:
        path = blob_path(layout, digest)
        with open(path, "rb") as src:
            entry = writer.add_stream(f"blobs/sha256/{digest[7:]}", src, plan.sizes[digest], source=str(path))
        if "sha256:" + entry.sha256 != digest:
            path.unlink()
            raise DigestMismatch(
                f"{path}: the source served bytes that are not {digest} (removed; a re-run fetches it)"
            )
        result.append(Member(entry.path, entry.size, entry.sha256))
    return result


def seal_images(
    layout: Path,
    tops: Sequence[tuple[Wanted, str, str]],
    *,
    key: PrivateKey,
    out: Path,
    base: VerifiedImages | None = None,
    split: int | None = None,
    progress: Progress = NO_PROGRESS,
    now: dt.datetime | None = None,
    bundle_id: str | None = None,
    deterministic: bool = False,
) -> ImagesManifest:
    """Write the signed images bundle ``out`` (and its parts with ``split``) from the pulled layout.

    ``bundle_id``, ``now`` and ``deterministic`` (RFC 6979 signatures) exist for the committed
    example generator (``bundles/generate_images_examples.py``); commands leave them alone."""
    plan = plan_bundle(layout, tops, base)
    for d in plan.order:
        if blob_path(layout, d).stat().st_size != plan.sizes[d]:
            raise DigestMismatch(f"{blob_path(layout, d)}: blob {d} does not have the size its manifest names")
    all_sizes = {**plan.sizes, **{d: i.size for d, i in plan.inherited.items()}}
    index = layout_index(plan.records, all_sizes)
    progress.start("sealing images bundle", sum(plan.sizes[d] for d in plan.order))

    def manifest_for(members: list[Member], parts: list[Part] | None) -> ImagesManifest:
        return ImagesManifest(
            bundle_id=bundle_id or new_bundle_id(),
            created=format_time(now or dt.datetime.now(dt.UTC)),
            signer=spki_sha256(key),
            base=None if base is None else Base(base.bundle_id, base.manifest_sha256),
            images=tuple(plan.records),
            members=tuple(members),
            inherited=tuple(plan.inherited.values()),
            parts=None if parts is None else tuple(parts),
        )

    if split is None:
        with AtomicFile(out) as fh:
            members = _write_members(fh, layout, plan, index, progress)
            manifest = manifest_for(members, None)
            data = manifest.canonical_bytes()
            BundleWriter(fh).finish(data, sign_manifest(key, data, deterministic=deterministic))
    else:
        manifest = _seal_split(
            out, split, lambda w: _write_members(w, layout, plan, index, progress), manifest_for, key, deterministic
        )
    progress.finish()
    return manifest


def _seal_split(
    out: Path, split: int, write: Any, manifest_for: Any, key: PrivateKey, deterministic: bool = False
) -> ImagesManifest:
    """Parts and head written in a private folder beside ``out``, then published: parts, head last."""
    if not MIN_SPLIT <= split <= FAT32_MAX:
        raise InvalidInput(f"--split {split}: a part must be {MIN_SPLIT} to {FAT32_MAX} bytes")
    if out.exists() or any(out.parent.glob(f"{out.name}.part[0-9][0-9][0-9]")):
        raise WouldOverwrite(f"{out}: already exists (or its parts do); refusing to overwrite")
    with scratch_dir(".airgap-seal-", out.parent) as tmp:  # beside out: published by rename
        parts_writer = _PartWriter(tmp, out.name, split)
        members = write(parts_writer)
        parts = parts_writer.finish()
        manifest: ImagesManifest = manifest_for(members, parts)
        data = manifest.canonical_bytes()
        with os.fdopen(create_file(tmp / out.name, 0o644), "wb") as fh:
            BundleWriter(fh).finish(data, sign_manifest(key, data, deterministic=deterministic))
            fh.flush()
            os.fsync(fh.fileno())
        for p in parts:
            publish(tmp / p.name, out.parent / p.name, replace=False)
        publish(tmp / out.name, out, replace=False)
        fsync_dir(out.parent)
        return manifest


MIN_SPLIT = 1024 * 1024


def check_platforms(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(check_platform(v) for v in values)
