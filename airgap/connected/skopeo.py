"""The wire for images: ``skopeo`` (containers/image) driven through :mod:`airgap.core.subproc`.

Trust: skopeo is trusted to move bytes and to speak the registry protocol (TLS, auth, retries,
blob reuse and cross-repository mounts); it is *not* trusted to have moved the right bytes.
Every manifest, index, config and layer it fetches is re-hashed by airgap before it is sealed
(:mod:`airgap.core.images_seal`), and everything pushed was verified first. Registry error text
is untrusted and shown escaped.

Credentials: only from a containers-auth.json file, passed to skopeo as ``--authfile PATH``.
Nothing secret is put on a command line or in the child's environment, nor printed. A private
CA (``--ca-bundle PEM``) becomes a private temporary ``--cert-dir`` holding ``ca.crt``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap.core import subproc
from airgap.core.atomic import write_new
from airgap.core.canonical import load_json
from airgap.core.display import clean
from airgap.core.files import read_capped
from airgap.core.limits import DEFAULT_LIMITS, MAX_OCI_MANIFEST
from airgap.core.scratch import scratch_dir
from airgap.errors import DigestMismatch, InvalidInput, Malformed, NetworkError, NotFound, NotServed

RETRIES = 3
MAX_AUTHFILE = 1024 * 1024
NOT_SERVED_MARKERS = ("manifest unknown", "name unknown")  # distribution's MANIFEST_UNKNOWN, NAME_UNKNOWN


@dataclass(frozen=True)
class RegistryAccess:
    """How to reach registries: a private CA folder, the auth file, retries."""

    cert_dir: Path | None
    authfile: Path | None
    retries: int = RETRIES

    def tls_args(self, flag: str) -> list[str]:
        return [flag, str(self.cert_dir)] if self.cert_dir else []

    def auth_args(self, flag: str = "--authfile") -> list[str]:
        return [flag, str(self.authfile)] if self.authfile else []

    def credentials(self, host: str) -> tuple[str, str] | None:
        """(user, password) for ``host`` from the auth file, or None. Never logged or printed."""
        if self.authfile is None:
            return None
        doc = load_json(read_capped(self.authfile, MAX_AUTHFILE, "registry auth file"), what=str(self.authfile))
        auths = doc.get("auths", {})
        # containers-auth.json keys: "HOST[:PORT]", "HOST[:PORT]/NAMESPACE…", or a legacy "https://HOST"
        keys = [k for k in auths if k.removeprefix("https://").split("/", 1)[0] == host]
        entry = auths.get(host) or (auths[keys[0]] if keys else None)
        if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
            return None
        try:
            user, _, password = base64.b64decode(entry["auth"], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{self.authfile}: the entry for {clean(host)} is not base64 of user:password") from exc
        return user, password


def default_authfile() -> Path | None:
    """What skopeo and podman read when no ``--authfile`` is given: ``$REGISTRY_AUTH_FILE``, then
    ``$XDG_RUNTIME_DIR/containers/auth.json``, then ``~/.config/containers/auth.json``."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env)
    candidates = []
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    candidates.append(Path.home() / ".config" / "containers" / "auth.json")
    return next((c for c in candidates if c.is_file()), None)


def check_authfile(path: Path) -> Path:
    """A containers-auth.json file: ``{"auths": {HOST: {"auth": base64}}}`` (exit 3 otherwise)."""
    raw = read_capped(path, MAX_AUTHFILE, "registry auth file")
    doc = load_json(raw, what=f"{path}: registry auth file", max_bytes=MAX_AUTHFILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise Malformed(f'{path}: registry auth file has no "auths" object (containers-auth.json format)')
    return path


@contextlib.contextmanager
def registry_access(ca_bundle: Path | None, authfile: Path | None) -> Iterator[RegistryAccess]:
    """A :class:`RegistryAccess` for the duration of a command (its temporary cert folder removed after)."""
    from airgap.core.x509 import load_certs_pem

    resolved = check_authfile(authfile) if authfile is not None else default_authfile()
    if resolved is not None and authfile is None:
        check_authfile(resolved)
    if ca_bundle is None:
        yield RegistryAccess(None, resolved)
        return
    pem = read_capped(ca_bundle, DEFAULT_LIMITS.max_pem_size, "CA bundle")
    load_certs_pem(pem, source=str(ca_bundle))
    with scratch_dir("airgap-certs-") as folder:
        write_new(folder / "ca.crt", pem, mode=0o600)
        yield RegistryAccess(folder, resolved)


def _fail(stderr: str, what: str) -> Exception:
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "skopeo failed"
    if 'msg="' in last:  # logrus: time="…" level=fatal msg="…"
        last = last.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    text = clean(last)[-600:]
    low = stderr.lower()
    if "digest" in low and any(w in low for w in ("did not match", "mismatch", "does not match")):
        return DigestMismatch(f"{what}: the registry served bytes that are not the digest they are named by: {text}")
    if "unauthorized" in low or "authentication required" in low:
        return NetworkError(
            f"{what}: the registry refused access (401; credentials come only from the auth file): {text}"
        )
    if any(m in low for m in NOT_SERVED_MARKERS):
        return NotServed(f"{what}: {text}")
    return NetworkError(f"{what}: {text}")


def run_skopeo(args: Sequence[str], *, what: str, cap: int | None = None) -> bytes:
    """Run ``skopeo ARGS``; its stdout, or a one-line error (exit 1 for a digest mismatch, else 5)."""
    if shutil.which("skopeo") is None:
        raise NotFound("skopeo is not installed (images pull/push drive it; see docs/images.md)")
    proc = subproc.run(["skopeo", *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise _fail(proc.stderr.decode("utf-8", "replace"), what)
    out: bytes = proc.stdout
    if cap is not None and len(out) > cap:
        raise InvalidInput(f"{what}: over the size limit ({cap} bytes)")
    return out


def inspect_raw(ref: str, access: RegistryAccess, *, config: bool = False) -> bytes:
    """The exact bytes the registry serves for ``ref``'s manifest (or, ``config``, its config blob)."""
    args = ["inspect", "--raw", *(["--config"] if config else []), "--retry-times", str(access.retries)]
    args += [*access.tls_args("--cert-dir"), *access.auth_args(), f"docker://{ref}"]
    return run_skopeo(args, what=ref, cap=MAX_OCI_MANIFEST)


def fetch_layers(ref: str, layout: Path, ref_name: str, access: RegistryAccess, platform: str | None) -> None:
    """Copy ``ref`` (all platforms, or one) into the shared OCI layout: each blob once, an existing
    blob not fetched again. Manifests written here are skopeo's and are not carried."""
    args = ["copy", "--quiet", "--retry-times", str(access.retries)]
    if platform is None:
        args.append("--all")
    else:
        os_, arch, *variant = platform.split("/")
        args += ["--override-os", os_, "--override-arch", arch] + (
            ["--override-variant", variant[0]] if variant else []
        )
    args += [*access.tls_args("--src-cert-dir"), *access.auth_args("--src-authfile")]
    run_skopeo([*args, f"docker://{ref}", f"oci:{layout}:{ref_name}"], what=ref)


def push_dir(folder: Path, dest: str, access: RegistryAccess, digestfile: Path) -> None:
    """Push one image from a skopeo ``dir:`` folder, every manifest byte for byte (``--preserve-digests``)."""
    args = ["copy", "--quiet", "--all", "--preserve-digests", "--retry-times", str(access.retries)]
    args += [*access.tls_args("--dest-cert-dir"), *access.auth_args("--dest-authfile")]
    args += ["--digestfile", str(digestfile), f"dir:{folder}", f"docker://{dest}"]
    run_skopeo(args, what=dest)
