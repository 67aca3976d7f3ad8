"""`airgap images list | pull | verify | push`: the mesh's images across the gap (docs/images.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from airgap.cli._app import RichProgress, info, new_app, print_json

app = new_app(
    help="Carry the mesh's container images across the gap: pulled once into a signed bundle, verified "
    "byte for byte, pushed by digest into the private registry.\n\n"
    "Example: airgap images pull --release asm --sign-key op.key --out mesh.images && "
    "airgap images push mesh.images --trust op.pub --registry registry.local:5000/mesh --ca-bundle ca.pem"
)

JsonOpt = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")
CaOpt = typer.Option(None, "--ca-bundle", help="PEM CA certificate(s) the registry's TLS certificate chains to.")
AuthOpt = typer.Option(
    None,
    "--authfile",
    help="containers-auth.json with the registry's credentials (default: $REGISTRY_AUTH_FILE, then "
    "~/.config/containers/auth.json). Credentials are never taken from the command line.",
)
_SIZE = re.compile(r"^([0-9]{1,15})([KMG]i?B?|B)?$", re.IGNORECASE)


def parse_size(value: str) -> int:
    """``4G``, ``700MiB``, ``1048576``: a size in bytes (exit 2 otherwise)."""
    m = _SIZE.match(value.strip())
    if not m:
        raise typer.BadParameter(f"{value!r} is not a size (like 4G, 700M or a number of bytes)")
    unit = (m.group(2) or "B")[:1].upper()
    return int(m.group(1)) * {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]


def _trust(paths: list[Path]) -> list[Any]:
    from airgap.core.keys import load_public_key
    from airgap.errors import InvalidInput

    if not paths:
        raise InvalidInput("give at least one --trust PUB (the public key of whoever pulled the images)")
    return [load_public_key(p) for p in paths]


@app.command("list")
def list_cmd(
    release: Path = typer.Option(..., "--release", help="The --out folder of 'airgap release extract'."),
    profile: str | None = typer.Option(None, "--profile", help="Istio profile (default: the release line's)."),
    as_json: bool = JsonOpt,
) -> None:
    """Every image an install of the verified release needs, read from its own profile and chart files.

    One reference per line: REGISTRY/PATH/NAME:TAG.

    Example: airgap images list --release asm-1.8.6 --profile asm-multicloud
    """
    from airgap.connected.images import list_images

    refs = list_images(release, profile)
    if as_json:
        print_json({"images": [{"name": r.name, "reference": str(r), "tag": r.tag} for r in refs]})
        return
    for r in refs:
        typer.echo(str(r))


def _images_doc(verified: Any) -> dict[str, Any]:
    m = verified.manifest
    return {
        "bundle": str(verified.path),
        "bundle_id": m.bundle_id,
        "signer": m.signer,
        "created": m.created,
        "base": None if m.base is None else m.base.bundle_id,
        "parts": None if m.parts is None else [p.name for p in m.parts],
        "blobs": len(m.members) - 2,
        "bytes": sum(b.size for b in m.members),
        "images": [i.to_doc() for i in m.images],
    }


def _print_images(images: Any) -> None:
    from airgap.core.display import clean

    for i in images:
        typer.echo(f"{clean(i.source)}  {i.digest}  {','.join(i.platforms) or '-'}")


@app.command("pull")
def pull_cmd(
    out: Path = typer.Option(..., "--out", help="The bundle to write (refused if it exists)."),
    sign_key: Path = typer.Option(..., "--sign-key", help="ECDSA P-256/P-384 key that signs the bundle."),
    release: Path | None = typer.Option(None, "--release", help="Pull what 'images list --release' names."),
    profile: str | None = typer.Option(None, "--profile", help="Istio profile (default: the release line's)."),
    pull_from: str | None = typer.Option(None, "--from", help="REGISTRY/PATH: a mirror of the release's hub."),
    image: list[str] = typer.Option([], "--image", help="Another image REGISTRY/PATH/NAME:TAG (repeat)."),
    platform: list[str] = typer.Option([], "--platform", help="OS/ARCH to carry (default: every platform)."),
    since: Path | None = typer.Option(None, "--since", help="An earlier images bundle: carry only what it lacks."),
    split: str | None = typer.Option(None, "--split", help="Write parts of at most SIZE (4G for FAT32)."),
    passphrase_file: Path | None = typer.Option(None, "--passphrase-file", help="Passphrase of --sign-key."),
    ca_bundle: Path | None = CaOpt,
    authfile: Path | None = AuthOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Pull the images into one signed bundle: each blob once, manifests byte for byte, every digest checked.

    An interrupted pull resumes (what was fetched and verified is kept beside --out until the bundle
    is written).

    Example: airgap images pull --release asm-1.8.6 --sign-key op.key --out mesh.images --split 4G
    """
    from airgap.connected.images import PullRequest, list_images, parse_reference, pull_images
    from airgap.connected.skopeo import registry_access
    from airgap.core.keys import is_encrypted_pem, load_private_key
    from airgap.core.passphrase import resolve_passphrase
    from airgap.errors import InvalidInput

    refs = (list_images(release, profile) if release else []) + [parse_reference(i) for i in image]
    if not refs:
        raise InvalidInput("nothing to pull: give --release DIR and/or --image REF")
    size = parse_size(split) if split is not None else None
    raw = sign_key.read_bytes() if sign_key.is_file() else b""
    pw = resolve_passphrase(passphrase_file, purpose="signing key passphrase") if is_encrypted_pem(raw) else None
    key = load_private_key(sign_key, pw)
    request = PullRequest(tuple(refs), pull_from.rstrip("/") if pull_from else None, tuple(platform), size)
    with registry_access(ca_bundle, authfile) as access:
        manifest = pull_images(request, key=key, out=out, access=access, since=since, progress=RichProgress())
    if as_json:
        print_json(
            {"bundle": str(out), "bundle_id": manifest.bundle_id, "images": [i.to_doc() for i in manifest.images]}
        )
        return
    _print_images(manifest.images)
    info(f"Wrote {out} ({len(manifest.members) - 2} blobs, {len(manifest.parts or ())} parts)")


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="The images bundle (the head file of a split bundle)."),
    trust: list[Path] = typer.Option([], "--trust", help="A trusted signer public key (PEM); repeat for several."),
    as_json: bool = JsonOpt,
) -> None:
    """Verify the signature, then every part, blob and manifest reference in one pass; list the images.

    Example: airgap images verify mesh.images --trust op.pub --json
    """
    from airgap.connected.images import open_images

    verified = open_images(bundle, _trust(trust), progress=RichProgress())
    if as_json:
        print_json({"verified": True, **_images_doc(verified)})
        return
    m = verified.manifest
    extra = (f", base {m.base.bundle_id}" if m.base else "") + (f", {len(m.parts)} parts" if m.parts else "")
    typer.echo(f"Verified OK: images bundle {m.bundle_id}, signer {m.signer}, {len(m.members) - 2} blobs{extra}")
    _print_images(verified.images)


@app.command("push")
def push_cmd(
    bundle: Path = typer.Argument(..., help="The images bundle (the head file of a split bundle)."),
    registry: str = typer.Option(..., "--registry", help="HOST[:PORT][/PATH]: image NAME goes to REGISTRY/PATH/NAME."),
    trust: list[Path] = typer.Option([], "--trust", help="A trusted signer public key (PEM); repeat for several."),
    ca_bundle: Path | None = CaOpt,
    authfile: Path | None = AuthOpt,
    state: Path | None = typer.Option(None, "--state", help="The jump host's state folder (history)."),
    as_json: bool = JsonOpt,
) -> None:
    """Verify every byte, then push blobs, manifests, indexes and tags by digest. Pushing again changes nothing.

    Example: airgap images push mesh.images --trust op.pub --registry reg.local:5000/mesh --ca-bundle ca.pem
    """
    from airgap.connected.images import push_images
    from airgap.connected.skopeo import registry_access

    with registry_access(ca_bundle, authfile) as access:
        result = push_images(bundle, _trust(trust), registry, access=access, state=state, progress=RichProgress())
    if as_json:
        print_json({"bundle_id": result.bundle.bundle_id, "registry": result.registry, "images": list(result.images)})
        return
    for i in result.images:
        typer.echo(i["reference"])
