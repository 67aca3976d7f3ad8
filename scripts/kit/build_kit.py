"""Build the signed, hash-locked, reproducible offline kit: ``make kit [KIT_SIGN_KEY=key.pem]``.

Writes ``dist/airgap-offline-VERSION-PYTAG-PLATFORM.tar.gz`` holding one folder
``airgap-offline-VERSION/`` (the contract, section "The tool crosses the gap"):

    install.sh         POSIX sh installer: checks SHA256SUMS, then pip --no-index --require-hashes
    README             the openssl verification command and the install command
    requirements.lock  every wheel of the kit pinned with its one --hash (the project's included)
    wheels/            every dependency's wheel and the project's own; no sdist
    sbom.cdx.json      CycloneDX 1.6 (cyclonedx-bom), airgap as the top component
    SHA256SUMS         every other file of the kit (sha256sum format, sorted)
    SHA256SUMS.sig     raw DER ECDSA P-256 over SHA256SUMS, RFC 6979 deterministic

Reproducible: the project is built from ``git archive HEAD`` (never the work tree), with
SOURCE_DATE_EPOCH = the commit's time and a fixed umask; tar entries are sorted, owned by 0:0 with
empty names, dated SOURCE_DATE_EPOCH, modes 0755/0644; gzip carries no name and mtime 0; the
signature is deterministic. Dependencies come from ``requirements/runtime.lock`` (hash-checked by
pip on download) for the *target* Python and platform, so a kit for another host
(``--python-version 3.13 --platform manylinux_2_28_aarch64``) builds here too. Every pip/uv call
is isolated from the machine's pip configuration by :mod:`registry`.

Trust: the signing key is the only secret; it is read from ``--sign-key`` (PEM P-256, encrypted
keys need ``KIT_SIGN_PASSPHRASE_FILE``) or made once as ``dist/kit-signing.key`` (0600). The
public key is printed, never put in the kit.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry import isolated_env

HERE = Path(__file__).resolve().parent
DEFAULT_KEY_NAME = "kit-signing.key"
_WHEEL_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


class KitError(Exception):
    """A build step failed; the message is one line for the user."""


@dataclass
class Pin:
    """One ``name==version ; marker`` entry of a hash-pinned lock file."""

    name: str
    version: str
    marker: str | None
    hashes: list[str] = field(default_factory=list)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> list[Pin]:
    """Parse a ``--generate-hashes`` lock (uv/pip-compile output): pins, markers, hashes."""
    pins: list[Pin] = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line or line.startswith("-"):
            continue
        parts = line.split("--hash=")
        spec, hashes = parts[0].strip(), [h.strip() for h in parts[1:]]
        req, _, marker = spec.partition(";")
        name, sep, version = req.strip().partition("==")
        if not sep:
            raise KitError(f"lock entry is not pinned with ==: {req.strip()!r}")
        if not hashes:
            raise KitError(f"lock entry has no --hash: {req.strip()!r}")
        pins.append(Pin(canonical(name), version.strip(), marker.strip() or None, hashes))
    return pins


def target_environment(python_version: str, plat: str) -> dict[str, str]:
    """PEP 508 marker values of the target host (CPython on Linux), for a lock's markers."""
    machine = plat.rsplit("_", 1)[-1] if not plat.endswith("x86_64") else "x86_64"
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_version": f"{python_version}.0",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "platform_machine": machine,
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def pins_for_target(pins: list[Pin], env: dict[str, str]) -> list[Pin]:
    from packaging.markers import Marker

    return [p for p in pins if p.marker is None or Marker(p.marker).evaluate(env)]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise KitError(f"{' '.join(cmd[:4])} ... failed:\n  " + "\n  ".join(tail))
    return proc.stdout


def export_commit(repo: Path, dest: Path) -> tuple[str, int]:
    """``git archive HEAD`` unpacked into ``dest``; returns (commit, commit time)."""
    commit = run(["git", "-C", str(repo), "rev-parse", "HEAD"]).strip()
    epoch = int(run(["git", "-C", str(repo), "log", "-1", "--format=%ct", commit]).strip())
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        tf.extractall(dest, filter="data")
    return commit, epoch


def build_project_wheel(src: Path, out: Path, env: dict[str, str]) -> Path:
    """The project's py3-none-any wheel, built offline from the exported commit."""
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(src)],
        env=env,
    )
    built = sorted(out.glob("airgap-*.whl"))
    if len(built) != 1:
        raise KitError(f"expected one project wheel, found {[p.name for p in built]}")
    return built[0]


def platform_tags(plat: str) -> list[str]:
    """``plat`` and every older tag a host of that kind also runs: manylinux_2_28 takes 2_27 … 2_5.

    pip does not widen ``--platform`` by itself (as it does for the running host), so each tag is
    passed. A tag that is not manylinux is taken as given.
    """
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", plat)
    if not m:
        return [plat]
    top, arch = int(m[1]), m[2]
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(top, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{arch}" for minor, name in legacy.items() if minor <= top]
    return tags


def download_wheels(
    pins: list[Pin], dest: Path, python_version: str, plat: str, env: dict[str, str], work: Path
) -> None:
    """pip download every pin's wheel for the target, each checked against the lock's hashes."""
    req = work / "target.lock"
    req.write_text(
        "".join(f"{p.name}=={p.version} " + " ".join(f"--hash={h}" for h in p.hashes) + "\n" for p in pins)
    )
    run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--require-hashes",
         "--python-version", python_version, "--implementation", "cp",
         *(arg for tag in platform_tags(plat) for arg in ("--platform", tag)),
         "-d", str(dest), "-r", str(req)],
        env=env,
    )


def match_wheels(pins: list[Pin], wheels: Path) -> dict[str, tuple[Path, str]]:
    """Each pin's one downloaded wheel and its sha256; anything missing or extra is an error."""
    by_name: dict[str, tuple[Path, str]] = {}
    for whl in sorted(wheels.glob("*.whl")):
        m = _WHEEL_RE.match(whl.name)
        if not m:
            raise KitError(f"not a wheel file name: {whl.name}")
        name = canonical(m["name"])
        if name in by_name:
            raise KitError(f"two wheels for {name}")
        by_name[name] = (whl, sha256_file(whl))
    for p in pins:
        if p.name not in by_name:
            raise KitError(f"no wheel downloaded for {p.name}=={p.version}")
        if f"sha256:{by_name[p.name][1]}" not in p.hashes:
            raise KitError(f"{by_name[p.name][0].name}: hash not in the lock")
    extra = set(by_name) - {p.name for p in pins}
    if extra:
        raise KitError(f"wheels not in the lock: {sorted(extra)}")
    return by_name


def kit_lock_text(pins: list[Pin], hashes: dict[str, str], python_version: str, plat: str, commit: str) -> str:
    lines = [
        "# The offline kit's lock: every wheel in wheels/ pinned with its sha256 (pip --require-hashes).",
        f"# Target: CPython {python_version}, {plat}. Built from commit {commit}.",
    ]
    for p in sorted(pins, key=lambda p: p.name):
        lines.append(f"{p.name}=={p.version} \\")
        lines.append(f"    --hash=sha256:{hashes[p.name]}")
    return "\n".join(lines) + "\n"


def write_sbom(
    kit: Path,
    deps_lock: Path,
    pyproject: Path,
    project_wheel: Path,
    found: dict[str, tuple[Path, str]],
    env: dict[str, str],
) -> None:
    """CycloneDX 1.6 from the dependency lock (cyclonedx-py), airgap as the top component.

    cyclonedx-py puts a requirement's hashes on its distribution reference; each component also
    gets them as its own ``hashes`` and names the wheel file of the kit they belong to.
    """
    out = kit / "sbom.cdx.json"
    cdx = Path(sys.executable).with_name("cyclonedx-py")
    run(
        [str(cdx), "requirements", "--pyproject", str(pyproject), "--sv", "1.6", "--of", "JSON",
         "--output-reproducible", "--mc-type", "application", "-o", str(out), str(deps_lock)],
        env=env,
    )
    doc = json.loads(out.read_text())
    top = doc["metadata"]["component"]
    version = top["version"]
    top["purl"] = f"pkg:pypi/airgap@{version}"
    top["hashes"] = [{"alg": "SHA-256", "content": sha256_file(project_wheel)}]
    top.setdefault("properties", []).append({"name": "airgap:kit:wheel", "value": project_wheel.name})
    for comp in doc.get("components", []):
        wheel, digest = found[canonical(comp["name"])]
        refs = [h for ref in comp.get("externalReferences", []) for h in ref.get("hashes", [])]
        if {"alg": "SHA-256", "content": digest} not in refs:
            raise KitError(f"SBOM component {comp['name']} does not carry the hash of {wheel.name}")
        comp["hashes"] = [{"alg": "SHA-256", "content": digest}]
        comp.setdefault("properties", []).append({"name": "airgap:kit:wheel", "value": wheel.name})
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def write_sums(kit: Path) -> bytes:
    """SHA256SUMS over every file of the kit but itself and its signature, sorted by path."""
    lines = []
    for path in sorted(p for p in kit.rglob("*") if p.is_file()):
        rel = path.relative_to(kit).as_posix()
        if rel in ("SHA256SUMS", "SHA256SUMS.sig"):
            continue
        lines.append(f"{sha256_file(path)}  {rel}\n")
    data = "".join(lines).encode()
    (kit / "SHA256SUMS").write_bytes(data)
    return data


def load_or_make_key(sign_key: Path | None, dist: Path) -> object:
    """The kit signing key: ``sign_key`` (PEM P-256), or ``dist/kit-signing.key`` made once (0600)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from airgap.core.keys import is_encrypted_pem, load_private_key, write_private_key
    from airgap.core.passphrase import read_passphrase_file

    path = sign_key if sign_key is not None else dist / DEFAULT_KEY_NAME
    if sign_key is None and not path.exists():
        dist.mkdir(parents=True, exist_ok=True)
        pw_file = os.environ.get("KIT_SIGN_PASSPHRASE_FILE")
        passphrase = read_passphrase_file(Path(pw_file)) if pw_file else None
        write_private_key(path, ec.generate_private_key(ec.SECP256R1()), passphrase)
        note = "encrypted" if passphrase else "NOT encrypted: keep it on the build host only, or use KIT_SIGN_KEY"
        print(f"made a new kit signing key {path} (0600, {note})", file=sys.stderr)
    passphrase = None
    if is_encrypted_pem(path.read_bytes()):
        pw_file = os.environ.get("KIT_SIGN_PASSPHRASE_FILE")
        if not pw_file:
            raise KitError(f"{path}: key is encrypted; set KIT_SIGN_PASSPHRASE_FILE")
        passphrase = read_passphrase_file(Path(pw_file))
    key = load_private_key(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KitError(f"{path}: the kit signing key must be ECDSA P-256")
    return key


def sign_sums(key: object, data: bytes) -> bytes:
    """Raw DER ECDSA-SHA256, deterministic (RFC 6979), checked against the public key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    key.public_key().verify(sig, data, ec.ECDSA(hashes.SHA256()))
    return sig


def write_tarball(stage: Path, top: str, out: Path, epoch: int) -> None:
    """Sorted entries, 0:0 with empty owner names, mtime ``epoch``, gzip without name or mtime."""
    root = stage / top
    paths = [root, *sorted(root.rglob("*"), key=lambda p: p.relative_to(stage).as_posix())]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for p in paths:
            ti = tf.gettarinfo(str(p), arcname=p.relative_to(stage).as_posix())
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = epoch
            if ti.isdir():
                ti.mode = 0o755
                tf.addfile(ti)
            elif ti.isfile():
                ti.mode = 0o755 if p.name == "install.sh" else 0o644
                with open(p, "rb") as fh:
                    tf.addfile(ti, fh)
            else:
                raise KitError(f"unexpected file type in the kit: {p}")
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, out)


def default_platform() -> str:
    machine = platform.machine()
    return f"manylinux_2_28_{'x86_64' if machine in ('x86_64', 'AMD64') else machine}"


def build(args: argparse.Namespace) -> Path:
    from airgap.core.keys import public_pem, spki_sha256

    repo = Path(run(["git", "-C", str(args.repo), "rev-parse", "--show-toplevel"]).strip())
    dist = args.out.resolve()
    py = args.python_version
    plat = args.platform
    pytag = "cp" + py.replace(".", "")
    if run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"]).strip():
        print("note: the work tree has uncommitted changes; the kit is built from HEAD only", file=sys.stderr)
    key = load_or_make_key(args.sign_key, dist)
    os.umask(0o022)
    with tempfile.TemporaryDirectory(prefix="airgap-kit-") as t:
        tmp = Path(t)
        src = tmp / "src"
        src.mkdir()
        commit, epoch = export_commit(repo, src)
        version = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
        top = f"airgap-offline-{version}"
        kit = tmp / "stage" / top
        (kit / "wheels").mkdir(parents=True)
        env = isolated_env()
        env["SOURCE_DATE_EPOCH"] = str(epoch)
        env["PYTHONHASHSEED"] = "0"
        env["TZ"] = "UTC"

        print(f"kit {top}: commit {commit[:12]}, CPython {py}, {plat}", file=sys.stderr)
        project_wheel = build_project_wheel(src, tmp / "project", env)
        pins = pins_for_target(parse_lock((src / args.lock).read_text()), target_environment(py, plat))
        download_wheels(pins, kit / "wheels", py, plat, env, tmp)
        found = match_wheels(pins, kit / "wheels")
        hashes = {name: h for name, (_, h) in found.items()}
        deps_lock = tmp / "deps.lock"
        deps_lock.write_text(kit_lock_text(pins, hashes, py, plat, commit))
        shutil.copyfile(project_wheel, kit / "wheels" / project_wheel.name)
        own = Pin("airgap", version, None)
        hashes["airgap"] = sha256_file(project_wheel)
        (kit / "requirements.lock").write_text(kit_lock_text([*pins, own], hashes, py, plat, commit))
        write_sbom(kit, deps_lock, src / "pyproject.toml", project_wheel, found, env)
        shutil.copyfile(HERE / "install.sh", kit / "install.sh")
        readme = (HERE / "README.kit").read_text()
        (kit / "README").write_text(readme.replace("@VERSION@", version).replace("@TARGET@", f"CPython {py}, {plat}"))
        sums = write_sums(kit)
        (kit / "SHA256SUMS.sig").write_bytes(sign_sums(key, sums))

        dist.mkdir(parents=True, exist_ok=True)
        out = dist / f"{top}-{pytag}-{plat}.tar.gz"
        write_tarball(tmp / "stage", top, out, epoch)
    pub = public_pem(key)  # type: ignore[arg-type]
    where = ""
    if args.sign_key is None:  # the key make kit made: its public half beside it
        (dist / "kit-signing.pub").write_bytes(pub)
        where = f"also in {dist / 'kit-signing.pub'}; "
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB, {len(pins) + 1} wheels)")
    print(f"  sha256 {sha256_file(out)}")
    print(f"  signed by the key with SPKI SHA-256 {spki_sha256(key)}")  # type: ignore[arg-type]
    print(f"  public key ({where}carry it to the offline host separately, never inside the kit):")
    print(pub.decode().rstrip())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=Path.cwd())
    ap.add_argument("--out", type=Path, default=Path("dist"))
    ap.add_argument("--sign-key", type=Path, default=None, help="PEM P-256 private key (default: dist/kit-signing.key)")
    ap.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}")
    ap.add_argument("--platform", default=default_platform())
    ap.add_argument("--lock", default="requirements/runtime.lock", help="the runtime lock, relative to the repo")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        ap.error(f"--python-version must look like 3.13, not {args.python_version!r}")
    if not re.fullmatch(r"[a-z0-9_]+", args.platform):
        ap.error(f"--platform must be a wheel platform tag, not {args.platform!r}")
    try:
        build(args)
    except KitError as exc:
        print(f"make kit: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # airgap's own errors (a bad key file) carry a message
        msg = getattr(exc, "message", None)
        if msg is None:
            raise
        print(f"make kit: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
