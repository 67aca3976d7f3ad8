"""`airgap release keys | verify | fetch | extract`: signed ASM/Istio release tarballs."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from airgap.cli._app import RichProgress, info, new_app, print_json
from airgap.core.limits import MAX_RETRIES, MAX_SPEED_LIMIT, MAX_TIMEOUT
from airgap.errors import VerificationError

app = new_app(
    help="Fetch, verify and safely extract signed ASM/Istio release tarballs.\n\n"
    "Trusted keys: the pinned ASM release key (airgap release keys), every *.pem public key in "
    "$AIRGAP_RELEASE_KEYS (default ~/.config/airgap/release-keys/), or one --key PEM.\n\n"
    "Example: airgap release fetch 1.8.6-asm.8 --out releases && "
    "airgap release extract releases/istio-1.8.6-asm.8-linux-amd64.tar.gz --out asm-1.8.6"
)

KeyOpt = typer.Option(None, "--key", help="Trust only this PEM public key (or certificate).")
KeyIdOpt = typer.Option(None, "--key-id", help="Trust only the known key with this id or fingerprint.")
JsonOpt = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")
DowngradeOpt = typer.Option(
    False,
    "--allow-downgrade",
    help="Accept a release older than one this jump host already accepted of the same line (major.minor).",
)


def _check_key_options(key: Path | None, key_id: str | None) -> None:
    if key is not None and key_id is not None:
        raise typer.BadParameter("give either --key or --key-id, not both", param_hint="--key/--key-id")


@app.command("keys")
def keys(as_json: bool = JsonOpt) -> None:
    """List the trusted release keys: id, algorithm, SHA-256 of the DER public key, source.

    Pinned keys are built in; add your own as PEM files in $AIRGAP_RELEASE_KEYS
    (default ~/.config/airgap/release-keys/NAME.pem, id NAME).

    Example: airgap release keys --json
    """
    from airgap.core.release import known_keys, user_keys_dir

    found = known_keys()
    if as_json:
        print_json({"keys": [k.to_json() for k in found], "keys_folder": str(user_keys_dir())})
        return
    width = max(len(k.id) for k in found)
    for k in found:
        typer.echo(f"{k.id:<{width}}  {k.algorithm:<10}  {k.fingerprint}  {k.source}")
    info(f"keys folder: {user_keys_dir()}")


def _failure(exc: VerificationError, as_json: bool, doc: dict[str, object]) -> NoReturn:
    if as_json:
        print_json({**doc, "verdict": "failure", "error": exc.message})
    else:
        typer.echo("Verification Failure")
    raise exc


@app.command("verify")
def verify(
    file: Path = typer.Argument(..., help="The release file (.tar.gz or .zip)."),
    signature: Path | None = typer.Option(None, "--signature", help="Detached signature (default: FILE.1.sig)."),
    key: Path | None = KeyOpt,
    key_id: str | None = KeyIdOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Verify a release file's detached signature, like `openssl dgst -sha256 -verify`.

    Prints `Verified OK` (exit 0) or `Verification Failure` (exit 1). Accepts the raw DER ECDSA
    signature of `openssl dgst -sha256 -sign` (the ASM .1.sig files) and the base64 form of
    `cosign sign-blob`; P-256 (SHA-256), P-384 (SHA-384) and RSA keys. A missing or unreadable
    file, signature or key is exit 3.

    Example: airgap release verify istio-1.8.6-asm.8-linux-amd64.tar.gz
    """
    from airgap.core.release import verify_release

    _check_key_options(key, key_id)
    try:
        v = verify_release(file, signature, key=key, key_id=key_id, progress=RichProgress())
    except VerificationError as exc:
        _failure(exc, as_json, {"file": str(file)})
    if as_json:
        print_json(v.to_json())
    else:
        typer.echo("Verified OK")
        info(f"{file}: sha256 {v.sha256}, key {v.key.id} ({v.key.algorithm}, {v.key.fingerprint})")


@app.command("fetch")
def fetch(
    version: str = typer.Argument(..., help="Release version, e.g. 1.8.6-asm.8."),
    platform: str = typer.Option("linux-amd64", "--platform", help="linux-amd64 | osx | win (.zip)."),
    base_url: str = typer.Option(
        "https://storage.googleapis.com/gke-release/asm",
        "--base-url",
        help="https:// mirror or file:///folder holding istio-VERSION-PLATFORM.tar.gz and its .1.sig.",
    ),
    ca_bundle: Path | None = typer.Option(
        None, "--ca-bundle", help="PEM CA bundle for a private mirror (default: $REQUESTS_CA_BUNDLE, else system)."
    ),
    key: Path | None = KeyOpt,
    key_id: str | None = KeyIdOpt,
    out: Path = typer.Option(Path(), "--out", help="Folder for the tarball and its .1.sig (created when missing)."),
    timeout: float = typer.Option(
        60.0, "--timeout", min=0.1, max=MAX_TIMEOUT, help="Read timeout in seconds (connect: 15 s)."
    ),
    retries: int = typer.Option(
        5,
        "--retries",
        min=0,
        max=MAX_RETRIES,
        help="Retries per file on 5xx, dropped or too slow connections, each after a backoff.",
    ),
    speed_limit: int = typer.Option(
        1024,
        "--speed-limit",
        min=0,
        max=MAX_SPEED_LIMIT,
        help="Bytes/s: an attempt slower than this for --speed-time seconds fails (0: no limit).",
    ),
    speed_time: float = typer.Option(
        30.0, "--speed-time", min=1.0, max=MAX_TIMEOUT, help="Seconds; see --speed-limit."
    ),
    as_json: bool = JsonOpt,
    allow_downgrade: bool = DowngradeOpt,
) -> None:
    """Download a release tarball and its .1.sig, verify, and only then keep them.

    The download goes to OUT/NAME.part (resumed with HTTP Range after a dropped connection, also
    by re-running), is verified, then renamed. A file that fails verification is deleted (exit 1).
    --retries bounds the attempts per file, however much each one got; an attempt slower than
    --speed-limit bytes/s over --speed-time seconds fails (like curl's options). After the last
    retry: exit 5. Proxies come from HTTPS_PROXY/NO_PROXY. An https->http redirect is refused. The archive's
    root folder must be istio-VERSION (exit 1), and a release older than one this jump host has
    accepted of the same line is refused (exit 4) unless --allow-downgrade.

    Example: airgap release fetch 1.8.6-asm.8 --out releases

    Example: airgap release fetch 1.8.6-asm.8 --base-url https://mirror.corp/asm --ca-bundle corp-ca.pem
    """
    from airgap.connected.fetch import FetchOptions, fetch_release

    _check_key_options(key, key_id)
    options = FetchOptions(
        ca_bundle=ca_bundle, read_timeout=timeout, retries=retries, speed_limit=speed_limit, speed_time=speed_time
    )
    try:
        got = fetch_release(
            version,
            platform=platform,
            base_url=base_url,
            out=out,
            key=key,
            key_id=key_id,
            options=options,
            progress=RichProgress(),
            allow_downgrade=allow_downgrade,
        )
    except VerificationError as exc:
        _failure(exc, as_json, {"version": version, "platform": platform})
    if as_json:
        print_json(got.to_json())
    else:
        typer.echo("Verified OK")
        typer.echo(f"{got.tarball}")
        info(f"sha256 {got.verified.sha256}, key {got.verified.key.id} ({got.verified.key.fingerprint})")


@app.command("extract")
def extract(
    file: Path = typer.Argument(..., help="The release file (.tar.gz or .zip)."),
    signature: Path | None = typer.Option(None, "--signature", help="Detached signature (default: FILE.1.sig)."),
    key: Path | None = KeyOpt,
    key_id: str | None = KeyIdOpt,
    out: Path = typer.Option(..., "--out", help="Output folder: must be missing or empty."),
    as_json: bool = JsonOpt,
    version: str | None = typer.Option(
        None, "--version", help="The release this must be (default: from the name istio-VERSION-PLATFORM.tar.gz)."
    ),
    allow_downgrade: bool = DowngradeOpt,
) -> None:
    """Verify a release file, then extract it safely into OUT with OUT/RELEASE.json.

    Refused (exit 3): absolute or '..' paths, links pointing out, devices/FIFOs, archives over the
    size, member-count or expansion caps. Extraction happens beside OUT and is renamed into place,
    so a failure leaves nothing. The archive's root folder must be istio-VERSION of the file's
    name (or --version), else exit 1; an older release of a line this jump host accepted a newer
    one of is refused (exit 4) unless --allow-downgrade. RELEASE.json records the tarball's SHA-256, the verifying key,
    and each file's SHA-256 and mode; `airgap mesh install --release OUT` re-checks bin/istioctl.

    Example: airgap release extract istio-1.8.6-asm.8-linux-amd64.tar.gz
    --signature istio-1.8.6-asm.8-linux-amd64.tar.gz.1.sig --out asm-1.8.6
    """
    from airgap.core.release import extract_release, record_extract

    _check_key_options(key, key_id)
    try:
        rel = extract_release(
            file,
            out,
            signature,
            key=key,
            key_id=key_id,
            progress=RichProgress(),
            version=version,
            allow_downgrade=allow_downgrade,
        )
    except VerificationError as exc:
        _failure(exc, as_json, {"file": str(file)})
    record_extract(rel)  # the jump host's history ($AIRGAP_STATE_DIR), for 'airgap audit report --state'
    if as_json:
        doc = rel.verified.to_json()
        doc.update({"out": str(out), "root": str(rel.root) if rel.root else None, "files": len(rel.record["files"])})
        print_json(doc)
    else:
        typer.echo("Verified OK")
        typer.echo(f"Extracted {len(rel.record['files'])} files to {rel.root or out}")
        info(f"record: {out / 'RELEASE.json'}")
