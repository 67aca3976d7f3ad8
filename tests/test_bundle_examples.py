"""The committed example bundles: each fails (or passes) exactly as its README line says."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.connected.bundle_import import prepare_import, record_accepted, render_to_dir
from airgap.core.bundle import open_bundle
from airgap.core.keys import load_public_key
from airgap.errors import AirgapError
from tests.example_fixtures import EXAMPLES, GEN, KEYS
from tests.helpers import REPO, run_cli, tree

CATALOGUE = {e.name: e for e in GEN.CATALOGUE}


def _code(fn: object) -> int:
    try:
        fn()  # type: ignore[operator]
    except AirgapError as exc:
        return exc.exit_code
    return 0


def test_catalogue_matches_files_and_readme() -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.bundle"))
    assert files == sorted(CATALOGUE)
    readme = (EXAMPLES / "README.md").read_text()
    for e in CATALOGUE.values():
        assert f"| `{e.name}` | {e.wrong} |" in readme


def test_generator_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    assert GEN.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_verify_outcome(name: str) -> None:
    trust = [load_public_key(KEYS / "officer.pub")]
    code = _code(lambda: open_bundle(EXAMPLES / name, trust, now=GEN.CHECK_TIME))
    assert code == CATALOGUE[name].verify


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_import_outcome_and_nothing_written(name: str, tmp_path: Path) -> None:
    trust = [load_public_key(KEYS / "officer.pub")]
    state = tmp_path / "state"

    def imp(bundle: str, out: Path) -> None:
        p = prepare_import(EXAMPLES / bundle, trust, KEYS / "operator.key", None, "c1", state, GEN.CHECK_TIME)
        render_to_dir(p, out)
        record_accepted(p)

    if name != "valid.bundle":
        imp("valid.bundle", tmp_path / "first")
    out = tmp_path / "DIR"
    out.mkdir()
    code = _code(lambda: imp(name, out))
    assert code == CATALOGUE[name].imports
    if code:
        assert tree(out) == []
    else:
        assert tree(out) == ["00-namespace.yaml", "10-cacerts-secret.yaml"]


def test_valid_example_through_the_cli(tmp_path: Path) -> None:
    r = run_cli("bundle", "verify", EXAMPLES / "valid.bundle", "--trust", KEYS / "officer.pub")
    assert r.code == 0, r.err
    r = run_cli(
        "bundle", "import", EXAMPLES / "valid.bundle", "--trust", KEYS / "officer.pub", "--identity",
        KEYS / "operator.key", "--cluster", "c1", "--output-dir", tmp_path / "out", "--plaintext-secrets",
        env={"AIRGAP_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert r.code == 0, r.err
    secret = (tmp_path / "out" / "10-cacerts-secret.yaml").read_text()
    assert "airgap.dev/sequence: '2'" in secret


# -- the JSON schema agrees with the code -------------------------------------------------------------
def _schema_errors(value: object, schema: dict[str, object], root: dict[str, object], where: str = "$") -> list[str]:
    """A minimal JSON Schema checker for the keywords manifest.schema.json uses (test-only)."""
    import re

    if "$ref" in schema:
        ref = str(schema["$ref"]).removeprefix("#/$defs/")
        return _schema_errors(value, root["$defs"][ref], root, where)  # type: ignore[index]
    errs: list[str] = []
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return [f"{where}: not an integer"]
    if isinstance(kind, str) and kind in types and not isinstance(value, types[kind]):
        return [f"{where}: not {kind}"]
    if isinstance(kind, list) and not any(isinstance(value, types[k]) for k in kind):
        return [f"{where}: not {' or '.join(kind)}"]
    if "const" in schema and (value != schema["const"] or isinstance(value, bool)):
        errs.append(f"{where}: not {schema['const']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(str(schema["pattern"]), value):
        errs.append(f"{where}: pattern")
    if "minimum" in schema and value < schema["minimum"]:  # type: ignore[operator]
        errs.append(f"{where}: minimum")
    if "maximum" in schema and value > schema["maximum"]:  # type: ignore[operator]
        errs.append(f"{where}: maximum")
    if isinstance(value, dict):
        props: dict[str, dict[str, object]] = schema.get("properties", {})  # type: ignore[assignment]
        errs += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]  # type: ignore[attr-defined]
        if schema.get("additionalProperties") is False:
            errs += [f"{where}: unknown {k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errs += _schema_errors(v, props[k], root, f"{where}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 30):  # type: ignore[operator]
            errs.append(f"{where}: item count")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            errs.append(f"{where}: not unique")
        for i, v in enumerate(value):
            errs += _schema_errors(v, schema["items"], root, f"{where}[{i}]")  # type: ignore[arg-type]
    return errs


def test_schema_accepts_valid_and_rejects_unknown_fields() -> None:
    import json

    from airgap.core.bundle import _MEMBER_KEYS, _TOP_KEYS, _TOP_KEYS_V1, inspect_bundle

    schema = json.loads((REPO / "bundles" / "manifest.schema.json").read_text())
    v1 = json.loads((REPO / "bundles" / "manifest-v1.schema.json").read_text())
    assert set(schema["required"]) == set(_TOP_KEYS) == set(schema["properties"])
    assert set(v1["required"]) == set(_TOP_KEYS_V1) == set(v1["properties"])
    assert set(schema["properties"]["members"]["items"]["required"]) == set(_MEMBER_KEYS)
    assert {k: v for k, v in schema["properties"].items() if k not in ("format_version", "ceremony_head")} == {
        k: v for k, v in v1["properties"].items() if k != "format_version"
    }
    for name in ("valid.bundle", "other-cluster.bundle", "wrong-recipient.bundle", "expired.bundle"):
        doc = inspect_bundle(EXAMPLES / name)["manifest"]
        assert _schema_errors(doc, schema, schema) == [], name
    valid = inspect_bundle(EXAMPLES / "valid.bundle")["manifest"]
    assert _schema_errors({**valid, "ceremony_head": None}, schema, schema) == []
    bad = inspect_bundle(EXAMPLES / "unknown-field.bundle")["manifest"]
    assert _schema_errors(bad, schema, schema) == ["$: unknown comment"]
    broken = {**valid, "sequence": 0, "bundle_id": "XYZ"}
    assert sorted(_schema_errors(broken, schema, schema)) == ["$.bundle_id: pattern", "$.sequence: minimum"]
    # ceremony_head: required in format 2, one spelling, and unknown in format 1
    missing = inspect_bundle(EXAMPLES / "missing-ceremony-head.bundle")["manifest"]
    assert _schema_errors(missing, schema, schema) == ["$: missing ceremony_head"]
    upper = inspect_bundle(EXAMPLES / "bad-ceremony-head.bundle")["manifest"]
    assert _schema_errors(upper, schema, schema) == ["$.ceremony_head: pattern"]
    assert _schema_errors({**valid, "ceremony_head": 7}, schema, schema) == ["$.ceremony_head: not string or null"]
    legacy = inspect_bundle(EXAMPLES / "legacy-v1.bundle")["manifest"]
    assert _schema_errors(legacy, v1, v1) == []
    assert sorted(_schema_errors(legacy, schema, schema)) == ["$.format_version: not 2", "$: missing ceremony_head"]
    v1_head = inspect_bundle(EXAMPLES / "v1-with-ceremony-head.bundle")["manifest"]
    assert _schema_errors(v1_head, v1, v1) == ["$: unknown ceremony_head"]


# -- an independent verifier written from bundles/SPEC.md alone agrees on every example -----------------
def _spec_verify(path: Path, trusted_pub_pem: bytes, now: object) -> int:
    """SPEC.md section 5, re-implemented without airgap.core.bundle; returns the exit code."""
    import datetime as dt
    import hashlib
    import json
    import re

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = path.read_bytes()
    if not data:
        return 3
    entries: list[tuple[str, bytes]] = []
    pos = 0
    while True:
        h = data[pos : pos + 512]
        if len(h) < 512:
            return 3
        if h == bytes(512):
            if data[pos + 512 : pos + 1024] != bytes(512) or len(data) < pos + 1024 or data[pos + 1024 :].strip(b"\0"):
                return 3
            break
        if not re.fullmatch(rb"[0-7]{6}\0 ", h[148:156]) or int(h[148:154], 8) != sum(h[:148]) + 256 + sum(h[156:]):
            return 3
        if h[257:265] != b"ustar\x0000" or not re.fullmatch(rb"[0-7]{11}\0", h[124:136]):
            return 3
        size = int(h[124:135], 8)
        if h[156:157] not in (b"0", b"\0") or h[157:257].strip(b"\0") or h[345:500].strip(b"\0"):
            return 3
        name = h[:100].split(b"\0", 1)[0].decode()
        parts = name.split("/")
        if (
            name.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or not re.fullmatch(r"[A-Za-z0-9._/-]+", name)
        ):
            return 3
        body = data[pos + 512 : pos + 512 + size]
        padded = pos + 512 + size + (-size % 512)
        if len(body) != size or len(data) < padded or data[pos + 512 + size : padded].strip(b"\0"):
            return 3
        entries.append((name, body))
        pos = padded
    names = [n for n, _ in entries]
    if len(set(names)) != len(names) or "manifest.json" not in names:
        return 3
    if "manifest.json.sig" not in names:
        return 1
    if names[-2:] != ["manifest.json", "manifest.json.sig"]:
        return 3
    raw, sig = entries[-2][1], entries[-1][1]
    try:
        doc = json.loads(raw)
    except ValueError:
        return 3
    v1_fields = {
        "format_version", "bundle_id", "cluster", "sequence", "created", "expires", "signer", "recipients", "members"
    }  # fmt: skip
    fields = {1: v1_fields, 2: v1_fields | {"ceremony_head"}}.get(doc.get("format_version"))  # SPEC: Versions
    if json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() != raw or set(doc) != fields:
        return 3
    head = doc.get("ceremony_head")
    if head is not None and not (isinstance(head, str) and re.fullmatch(r"[0-9a-f]{64}", head)):
        return 3
    if any(set(m) != {"path", "size", "sha256", "encrypted"} for m in doc["members"]):
        return 3
    pub = serialization.load_pem_public_key(trusted_pub_pem)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if doc["signer"] != hashlib.sha256(der).hexdigest():
        return 1
    try:
        pub.verify(sig, raw, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
    except InvalidSignature:
        return 1
    payload = dict(entries[:-2])
    for m in doc["members"]:
        if m["path"] in payload and hashlib.sha256(payload[m["path"]]).hexdigest() != m["sha256"]:
            return 1
    if [n for n, _ in entries[:-2]] != [m["path"] for m in doc["members"]]:
        return 1
    expires = dt.datetime.strptime(doc["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return 4 if now >= expires else 0  # type: ignore[operator]


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_independent_spec_verifier_agrees(name: str) -> None:
    code = _spec_verify(EXAMPLES / name, (KEYS / "officer.pub").read_bytes(), GEN.CHECK_TIME)
    assert code == CATALOGUE[name].verify
