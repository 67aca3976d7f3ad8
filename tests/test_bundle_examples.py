"""The committed example bundles: each fails (or passes) exactly as its README line says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from airgap.connected.bundle_import import prepare_import, record_accepted, render_to_dir
from airgap.core.bundle import open_bundle
from airgap.core.keys import load_public_key
from airgap.errors import AirgapError
from tests.helpers import REPO, run_cli, tree

EXAMPLES = REPO / "bundles" / "examples"
KEYS = EXAMPLES / "keys"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_examples", REPO / "bundles" / "generate_examples.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["generate_examples"] = mod
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()
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
        KEYS / "operator.key", "--cluster", "c1", "--output-dir", tmp_path / "out",
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
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return [f"{where}: not an integer"]
    if isinstance(kind, str) and kind in types and not isinstance(value, types[kind]):
        return [f"{where}: not {kind}"]
    if "const" in schema and (value != schema["const"] or isinstance(value, bool)):
        errs.append(f"{where}: not {schema['const']}")
    if "pattern" in schema and not re.search(str(schema["pattern"]), str(value)):
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

    from airgap.core.bundle import _MEMBER_KEYS, _TOP_KEYS, inspect_bundle

    schema = json.loads((REPO / "bundles" / "manifest.schema.json").read_text())
    assert set(schema["required"]) == set(_TOP_KEYS)
    assert set(schema["properties"]["members"]["items"]["required"]) == set(_MEMBER_KEYS)
    for name in ("valid.bundle", "other-cluster.bundle", "wrong-recipient.bundle", "expired.bundle"):
        doc = inspect_bundle(EXAMPLES / name)["manifest"]
        assert _schema_errors(doc, schema, schema) == [], name
    bad = inspect_bundle(EXAMPLES / "unknown-field.bundle")["manifest"]
    assert _schema_errors(bad, schema, schema) == ["$: unknown comment"]
    broken = {**inspect_bundle(EXAMPLES / "valid.bundle")["manifest"], "sequence": 0, "bundle_id": "XYZ"}
    assert sorted(_schema_errors(broken, schema, schema)) == ["$.bundle_id: pattern", "$.sequence: minimum"]
