"""Issue 9 item 7: every child process gets a scrubbed environment, through one helper."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from airgap.connected.mesh import run_istioctl
from airgap.core.subproc import child_env, is_secret_name, run

REPO = Path(__file__).resolve().parents[2]

SECRETS = {
    "AIRGAP_PASSPHRASE": "pw-1",
    "AIRGAP_PKCS11_PIN": "1234",
    "AIRGAP_LOG_KEY": "/keys/officer.key",
    "SOME_TOOL_PASSWORD": "pw-2",
    "VAULT_PASSPHRASE": "pw-3",
    "TOKEN_PIN": "9999",
}
KEPT = {"PATH": "/usr/bin:/bin", "HOME": "/root", "HTTPS_PROXY": "http://proxy:3128", "AWS_SESSION_TOKEN": "tok"}


def test_child_env_drops_airgap_variables_passphrases_and_pins() -> None:
    env = child_env(base={**SECRETS, **KEPT, "PINNED_VERSION": "1", "SPINE": "x"})
    assert not set(SECRETS) & set(env)
    assert {k: env[k] for k in KEPT} == KEPT  # what a kubeconfig exec plugin may need stays
    assert env["PINNED_VERSION"] == "1" and env["SPINE"] == "x"  # PIN only as a word


def test_child_env_refuses_to_add_a_secret_on_purpose() -> None:
    with pytest.raises(ValueError, match="AIRGAP_PASSPHRASE"):
        child_env({"AIRGAP_PASSPHRASE": "x"}, base={})
    assert is_secret_name("airgap_passphrase") and not is_secret_name("KUBECONFIG")


def test_a_real_child_sees_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    out = run([sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"], capture_output=True)
    import json

    seen = json.loads(out.stdout)
    assert not set(SECRETS) & set(seen)
    assert not any(v in out.stdout.decode() for v in SECRETS.values())


def test_istioctl_inherits_neither_the_passphrase_nor_the_pin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    lines: list[str] = []
    kubeconfig = tmp_path / "kubeconfig"
    run_istioctl(
        [sys.executable, "-c", "import os\nfor k, v in sorted(os.environ.items()): print(k + '=' + v)"],
        timeout=60,
        on_line=lines.append,
        context="ctx",
        kubeconfig=kubeconfig,
    )
    names = {ln.split("=", 1)[0] for ln in lines}
    assert not set(SECRETS) & names
    assert f"KUBECONFIG={kubeconfig}" in lines


def test_nothing_else_in_airgap_starts_a_process() -> None:
    """subprocess / os.system / os.exec* / os.spawn* / os.posix_spawn appear only in airgap/core/subproc.py."""
    offenders = []
    for path in sorted((REPO / "airgap").rglob("*.py")):
        if path == REPO / "airgap" / "core" / "subproc.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                name = f"{node.value.id}.{node.attr}"
                if node.value.id == "subprocess" and node.attr not in ("PIPE", "STDOUT", "DEVNULL", "TimeoutExpired"):
                    offenders.append(f"{path}:{node.lineno} {name}")
                if node.value.id == "os" and node.attr.startswith(("system", "exec", "spawn", "posix_spawn", "popen")):
                    offenders.append(f"{path}:{node.lineno} {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "subprocess":
                offenders.append(f"{path}:{node.lineno} from subprocess import")
    assert offenders == []
