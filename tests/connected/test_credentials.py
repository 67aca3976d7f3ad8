"""connected/credentials.py: exec credential plugins run by airgap; every failure is one line, nothing shown."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airgap.connected.credentials import run_exec_plugin
from airgap.errors import ClusterError, InvalidInput

API = "client.authentication.k8s.io/v1"


def _plugin(tmp_path: Path, body: str) -> dict[str, object]:
    script = tmp_path / "plugin.py"
    script.write_text("import os, sys, json\n" + body)
    return {"apiVersion": API, "command": sys.executable, "args": [str(script)]}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("print('SECRET-OUT'); sys.stderr.write('SECRET-ERR'); sys.exit(3)", "(exit 3)"),
        ("print('SECRET-OUT not json')", "(its answer is not an ExecCredential)"),
        ("print('[' * 5000)", "(its answer is not an ExecCredential)"),
        ("print(json.dumps({'apiVersion': 'v0', 'kind': 'ExecCredential', 'status': {'token': 'SECRET'}}))",
         f"(it answered apiVersion 'v0', not '{API}')"),
        (f"print(json.dumps({{'apiVersion': '{API}', 'kind': 'ExecCredential', 'status': {{}}}}))",
         "(its answer holds no token and no client certificate and key)"),
    ],
    ids=["exit-3", "not-json", "deep-json", "other-api-version", "no-credential"],
)
def test_each_failure_is_one_line_without_the_plugins_output(tmp_path: Path, body: str, why: str) -> None:
    with pytest.raises(ClusterError) as err:
        run_exec_plugin(_plugin(tmp_path, body), context="prod", cwd=str(tmp_path))
    assert err.value.message == f"the credential plugin for context prod failed {why}"
    assert "SECRET" not in err.value.message


def test_a_token_and_the_exec_info(tmp_path: Path) -> None:
    body = (
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert info['spec']['interactive'] is False and os.environ['EXTRA'] == 'x'\n"
        "assert 'AIRGAP_PASSPHRASE' not in os.environ\n"
        f"print(json.dumps({{'apiVersion': '{API}', 'kind': 'ExecCredential', 'status': {{'token': 't0k'}}}}))\n"
    )
    cfg = {**_plugin(tmp_path, body), "env": [{"name": "EXTRA", "value": "x"}]}
    with pytest.MonkeyPatch.context() as m:
        m.setenv("AIRGAP_PASSPHRASE", "never for a child")
        assert run_exec_plugin(cfg, context="prod", cwd=str(tmp_path))["token"] == "t0k"


def test_a_missing_plugin_is_exit_3(tmp_path: Path) -> None:
    missing = r"^the credential plugin for context prod failed: '/nonexistent/p' not found"
    with pytest.raises(InvalidInput, match=missing):
        run_exec_plugin({"apiVersion": API, "command": "/nonexistent/p"}, context="prod", cwd=str(tmp_path))
