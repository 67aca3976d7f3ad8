"""``airgap doctor``: what this host and this install of airgap are, checked offline.

Every check reads local state only: the interpreter, the cryptography build and the OpenSSL it
runs on, the routing table (``/proc/net/route``, ``/proc/net/ipv6_route``: an offline root host
should have no default route), the ``openssl`` and ``age`` tools on PATH (run with ``version``
only), a PKCS#11 module if one is configured (loaded, no token opened), and, when airgap was
installed from the offline kit, the kit's own records re-checked: ``PREFIX/share/airgap-kit/``
holds the kit's ``SHA256SUMS`` (and signature), ``requirements.lock`` and SBOM, written by
``install.sh``. No packet is sent; nothing here imports requests or kubernetes.

Trust: this reports, it does not protect. Someone who can change the installed files can change
this module too; the kit's protection is the openssl check of ``SHA256SUMS.sig`` *before* the
install. What the kit check does catch: an installed file changed or removed since the install
(against each package's pip ``RECORD``), a package that is not the locked one, a lock copy that is
not the one ``SHA256SUMS`` lists, and, while the kit folder is still there, any change to it.
Those records agree with each other even when all of them were rewritten together (another wheel,
its digest in ``SHA256SUMS`` and the lock): so the kit check says ``ok`` only when ``--verify-key``
verified ``SHA256SUMS.sig``; without it, consistent records are ``warn`` "not verified".
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from airgap.core import subproc

Status = Literal["ok", "warn", "fail", "info"]

KIT_RECORD_DIR = Path("share") / "airgap-kit"
ROUTE_FILES = (Path("/proc/net/route"), Path("/proc/net/ipv6_route"))
# Packages a venv brings itself (ensurepip), not from the kit's lock.
_VENV_OWN = frozenset({"pip", "setuptools"})
_RTF_UP = 0x0001
_RTF_REJECT = 0x0200
MAX_SUMS = 1 << 20


@dataclass(frozen=True)
class Check:
    """One line of the report: a name, a status, a human sentence and machine-readable facts."""

    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """False when any check failed (warnings do not fail the report)."""
        return all(c.status != "fail" for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "data": c.data} for c in self.checks],
        }


def check_python() -> Check:
    libc, libc_version = platform.libc_ver()
    data = {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "libc": f"{libc} {libc_version}".strip(),
    }
    return Check(
        "python",
        "ok",
        f"{data['implementation']} {data['version']} on {data['platform']} ({data['libc'] or 'libc unknown'})",
        data,
    )


def check_cryptography() -> Check:
    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    data = {"version": cryptography.__version__, "openssl": backend.openssl_version_text()}
    return Check("cryptography", "ok", f"cryptography {data['version']} on {data['openssl']}", data)


def default_routes(route_files: Iterable[Path] = ROUTE_FILES) -> tuple[list[str], list[str]]:
    """(interfaces with a default route, route files that could not be read)."""
    found: list[str] = []
    unread: list[str] = []
    for path in route_files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            unread.append(str(path))
            continue
        if path.name == "route":
            # Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, host byte order)
            for line in lines[1:]:
                f = line.split()
                if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and int(f[3], 16) & _RTF_UP:
                    found.append(f"{f[0]} (IPv4)")
        else:
            # dest dest_len src src_len next_hop metric refcnt use flags iface
            for line in lines:
                f = line.split()
                if len(f) < 10 or f[0] != "0" * 32 or f[1] != "00":
                    continue
                flags = int(f[8], 16)
                if flags & _RTF_UP and not flags & _RTF_REJECT and f[9] != "lo":
                    found.append(f"{f[9]} (IPv6)")
    return found, unread


def check_default_route(route_files: Iterable[Path] = ROUTE_FILES) -> Check:
    found, unread = default_routes(route_files)
    data: dict[str, Any] = {"default_routes": found, "unreadable": unread}
    if found:
        via = ", ".join(found)
        return Check("network", "warn", f"a default route exists via {via}: this host can reach a network", data)
    if unread:
        return Check("network", "info", f"cannot read {', '.join(unread)}: default route unknown", data)
    return Check("network", "ok", "no default route (as an offline root host should be)", data)


def _tool_version(name: str, args: list[str], which: Callable[[str], str | None]) -> tuple[str | None, str | None]:
    path = which(name)
    if path is None:
        return None, None
    try:
        proc = subproc.run([path, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return path, None
    out = (proc.stdout or proc.stderr).strip().splitlines()
    return path, (out[0] if proc.returncode == 0 and out else None)


def check_tool(name: str, args: list[str], why: str, which: Callable[[str], str | None] = shutil.which) -> Check:
    path, version = _tool_version(name, args, which)
    if path is None:
        return Check(name, "warn", f"{name} not found on PATH ({why})", {"path": None, "version": None})
    if version is None:
        return Check(name, "warn", f"{path} did not report a version", {"path": path, "version": None})
    return Check(name, "ok", f"{version} ({path})", {"path": path, "version": version})


def check_pkcs11(module: Path | None) -> Check:
    """Load the configured PKCS#11 module (trusted code, as for ``ca`` commands); no token is opened."""
    if module is None:
        return Check("pkcs11", "info", "no PKCS#11 module configured (--pkcs11-module, or a PKI with a token key)", {})
    data: dict[str, Any] = {"module": str(module)}
    if not module.is_file():
        return Check("pkcs11", "fail", f"{module}: PKCS#11 module not found", data)
    try:
        import pkcs11

        lib = pkcs11.lib(str(module))
        data["manufacturer"] = str(lib.manufacturer_id).strip()
        data["description"] = str(lib.library_description).strip()
        data["cryptoki_version"] = ".".join(str(v) for v in lib.cryptoki_version)
        slots = lib.get_slots(token_present=True)
        data["tokens"] = len(slots)
    except Exception as exc:  # python-pkcs11 raises many types for a module that will not load
        return Check("pkcs11", "fail", f"{module}: cannot load PKCS#11 module ({type(exc).__name__})", data)
    return Check(
        "pkcs11",
        "ok",
        f"{data['description']} by {data['manufacturer']} (Cryptoki {data['cryptoki_version']}, "
        f"{data['tokens']} token(s)) at {module}",
        data,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_sums(text: str) -> dict[str, str]:
    """``sha256sum`` lines ``HEX  path`` → {path: hex}; a malformed or unsafe line is an error."""
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if (
            not sep
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
            or not name
            or name.startswith("/")
            or ".." in name.split("/")
        ):
            raise ValueError(f"SHA256SUMS line {n} is malformed")
        sums[name] = digest
    return sums


def _locked(lock_text: str) -> dict[str, str]:
    """{canonical name: version} of a kit's requirements.lock."""
    pins: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", lock_text, re.MULTILINE):
        pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return pins


def _record_problems(dist: Any, site: Path) -> tuple[int, list[str]]:
    """Files of one installed distribution checked against its pip RECORD: (checked, problems).

    Entries outside site-packages (``bin/`` scripts, which install.sh re-points at the final
    folder) and entries without a hash (RECORD itself, .pyc) are not checked.
    """
    record = dist.read_text("RECORD")
    if record is None:
        return 0, [f"{dist.metadata['Name']}: no RECORD"]
    checked, problems = 0, []
    for row in csv.reader(io.StringIO(record)):
        if len(row) < 2 or not row[1] or row[0].startswith(("../", "/")):
            continue
        algo, _, want = row[1].partition("=")
        if algo != "sha256":
            continue
        path = site / row[0]
        try:
            got = base64.urlsafe_b64encode(bytes.fromhex(_sha256(path))).rstrip(b"=").decode()  # RECORD's form
        except OSError:
            problems.append(f"{row[0]}: missing")
            continue
        checked += 1
        if got != want:
            problems.append(f"{row[0]}: changed since the install")
    return checked, problems


def check_kit(prefix: Path, verify_key: Path | None = None) -> Check:
    """Re-check an install made by the kit's install.sh (``PREFIX/share/airgap-kit``)."""
    record_dir = prefix / KIT_RECORD_DIR
    sums_path = record_dir / "SHA256SUMS"
    data: dict[str, Any] = {"prefix": str(prefix), "record": str(record_dir)}
    if not sums_path.is_file():
        return Check("kit", "info", f"not installed from an offline kit (no {record_dir})", data)
    problems: list[str] = []
    # 1. The SHA256SUMS copy parses, and (with --verify-key) its signature verifies.
    try:
        sums_bytes = sums_path.read_bytes()[:MAX_SUMS]
        sums = parse_sums(sums_bytes.decode())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Check("kit", "fail", f"{sums_path}: unreadable ({exc})", data)
    data["sums_sha256"] = hashlib.sha256(sums_bytes).hexdigest()
    if verify_key is not None:
        data["signature"] = _verify_signature(verify_key, sums_bytes, record_dir / "SHA256SUMS.sig", problems)
    # 2. The copies of the lock and the SBOM are the ones SHA256SUMS lists.
    _check_record_copies(record_dir, sums, problems)
    # 3. The installed packages are exactly the locked ones, and their files are unchanged.
    data["packages"], data["files_checked"] = _check_installed(prefix, record_dir, problems)
    # 4. The kit folder it was installed from, if still there: every file against SHA256SUMS.
    source_file = record_dir / "source"
    source = Path(source_file.read_text().strip()) if source_file.is_file() else None
    data["installed_from"] = str(source) if source else None
    data["kit_folder_checked"] = False
    if source is not None and (source / "SHA256SUMS").is_file():
        data["kit_folder_checked"] = True
        _check_kit_folder(source, sums, sums_bytes, problems)
    data["problems"] = problems
    return _kit_verdict(data, problems, source, verify_key)


def _check_record_copies(record_dir: Path, sums: dict[str, str], problems: list[str]) -> None:
    """Step 2: the install's copies of the lock and the SBOM are the ones SHA256SUMS lists."""
    for name in ("requirements.lock", "sbom.cdx.json"):
        copy = record_dir / name
        if name not in sums:
            problems.append(f"{name}: not listed in SHA256SUMS")
        elif not copy.is_file():
            problems.append(f"{copy}: missing")
        elif _sha256(copy) != sums[name]:
            problems.append(f"{copy}: differs from the kit's SHA256SUMS")


def _check_installed(prefix: Path, record_dir: Path, problems: list[str]) -> tuple[int, int]:
    """Step 3: the installed packages are exactly the locked ones, and their files are unchanged.
    Returns (locked packages installed, files checked)."""
    from importlib import metadata

    lock_path = record_dir / "requirements.lock"
    locked = _locked(lock_path.read_text()) if lock_path.is_file() else {}
    site = Path(next((p for p in (prefix / "lib").glob("python3*/site-packages")), prefix / "lib" / "site-packages"))
    installed: dict[str, str] = {}
    files_checked = 0
    for dist in metadata.distributions(path=[str(site)]):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        installed[name] = dist.version
        if name in _VENV_OWN and name not in locked:
            continue
        if locked.get(name) != dist.version:
            problems.append(f"{name} {dist.version}: installed but not in the kit's lock")
            continue
        n, bad = _record_problems(dist, site)
        files_checked += n
        problems.extend(bad)
    for name, version in sorted(locked.items()):
        if name not in installed:
            problems.append(f"{name} {version}: in the kit's lock but not installed")
    return len([n for n in installed if n in locked]), files_checked


def _check_kit_folder(source: Path, sums: dict[str, str], sums_bytes: bytes, problems: list[str]) -> None:
    """Step 4: the kit folder installed from holds the same SHA256SUMS and exactly its files, unchanged."""
    if (source / "SHA256SUMS").read_bytes() != sums_bytes:
        problems.append(f"{source}/SHA256SUMS: differs from the copy made at install")
    present = {p.relative_to(source).as_posix() for p in source.rglob("*") if not p.is_dir()}
    present -= {"SHA256SUMS", "SHA256SUMS.sig"}
    for name in sorted(present - set(sums)):
        problems.append(f"{source}/{name}: not in SHA256SUMS")
    for name, digest in sorted(sums.items()):
        p = source / name
        if not p.is_file():
            problems.append(f"{source}/{name}: missing")
        elif _sha256(p) != digest:
            problems.append(f"{source}/{name}: changed")


def _kit_verdict(data: dict[str, Any], problems: list[str], source: Path | None, verify_key: Path | None) -> Check:
    """fail on any problem; without --verify-key at best warn (consistent is not authentic); else ok."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("kit", "fail", f"kit install re-check failed: {problems[0]}{more}", data)
    where = f", kit folder {source} re-checked" if data["kit_folder_checked"] else ""
    facts = (
        f"{data['packages']} locked packages, {data['files_checked']} files as installed from SHA256SUMS "
        f"{data['sums_sha256']}{where}"
    )
    if verify_key is None:
        # Consistency is not authenticity: SHA256SUMS, the lock and the packages can all be rewritten
        # together. Only the kit's signature says they are the kit that was built: never "ok" without it.
        data["signature"] = "not verified"
        return Check(
            "kit",
            "warn",
            f"not verified: the kit's signature was not checked (pass --verify-key KIT.pub); {facts}",
            data,
        )
    return Check("kit", "ok", f"signature {data['signature']}; {facts}", data)


def _verify_signature(key_path: Path, data: bytes, sig_path: Path, problems: list[str]) -> str:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from airgap.core.keys import load_public_key, spki_sha256
    from airgap.errors import AirgapError

    try:
        key = load_public_key(key_path)
        sig = sig_path.read_bytes()[:1024]
    except (AirgapError, OSError) as exc:
        problems.append(f"cannot check the signature: {exc}")
        return "error"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        problems.append(f"{key_path}: not an ECDSA public key")
        return "error"
    try:
        key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        problems.append(f"SHA256SUMS.sig does not verify with {key_path}")
        return "bad"
    return f"verified by {spki_sha256(key)}"


def run_checks(
    *,
    prefix: Path | None = None,
    pkcs11_module: Path | None = None,
    verify_key: Path | None = None,
    route_files: Iterable[Path] = ROUTE_FILES,
) -> Report:
    """Every check, in order. Reads local state only; sends nothing."""
    return Report(
        (
            check_python(),
            check_cryptography(),
            check_default_route(route_files),
            check_tool("openssl", ["version"], "the guide's verification commands use it"),
            check_tool("age", ["--version"], "custodians decrypt shares with it"),
            check_pkcs11(pkcs11_module),
            check_kit(Path(sys.prefix) if prefix is None else prefix, verify_key),
        )
    )
