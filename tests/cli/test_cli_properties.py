"""A property test over the whole CLI: no input crashes the tool, and a failure writes nothing.

The commands and their options are read from the click tree (``typer.main.get_command``), so a new
command or option is covered without editing this file. For each command a *baseline* invocation
is built that reaches deep into the command (a real PKI, keys, a bundle, a kubeconfig whose API
server refuses connections), then one option at a time gets hostile values:

* numbers: 0, -1, 99999999 and 10**20 (floats also nan and inf);
* paths: missing, a folder, an empty file, garbage bytes, an unreadable file (mode 000: binds only
  when the tests do not run as root; the root case is covered by the setpriv tests of each reader);
* strings: empty, 10 kB, control characters and ANSI escapes, ``..``.

Every result must be one of the contract's exit codes (0-5), never a traceback; a failure other
than a usage error (exit 2, typer's own message) prints exactly one ``airgap: error:`` line; and a
failed command leaves the workspace (PKI, outputs, the import state, the current folder) unchanged.
"""

from __future__ import annotations

import os
import shutil
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from airgap.cli import app
from airgap.offline.bundle import seal_bundle
from tests.bundle_fixtures import new_keys
from tests.conftest import PASSPHRASE
from tests.helpers import run_cli

NUMBERS = ("0", "-1", "99999999", str(10**20))
FLOATS = ("nan", "inf")
STRINGS = ("", "x" * 10_240, "a\x1b[2J\x1b]0;owned\x07\rb\n[bold red]c[/]", "..")
PATH_CASES = ("missing", "folder", "empty", "garbage", "unreadable")
GARBAGE = bytes(range(256)) * 4

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: ctx1
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: ctx1
  context: {cluster: nowhere, user: u}
"""


def commands() -> Iterator[tuple[str, Any]]:
    """(``"group command"``, click command) for every leaf command of the app."""

    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    yield from walk(typer.main.get_command(app), [])


COMMANDS = dict(commands())


def kind_of(param: Any) -> str:
    """number / float / path / string / flag for a click parameter made by typer."""
    if getattr(param, "is_flag", False):
        return "flag"
    if not hasattr(param, "type_descriptor"):  # typer < 0.29: the click type says it
        name = param.type.name  # "int", "int range", "float", "float range", "path", "boolean", "str"
        head = name.split()[0]
        return {"int": "number", "integer": "number", "float": "float", "path": "path", "boolean": "flag"}.get(
            head, "string"
        )
    ann: Any = param.type_descriptor.annotation
    while True:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        origin = typing.get_origin(ann)
        if origin in (list, typing.Union, types.UnionType) and args:
            ann = args[0]
            continue
        break
    if ann is bool:
        return "flag"
    if ann is int:
        return "number"
    if ann is float:
        return "float"
    if isinstance(ann, type) and issubclass(ann, os.PathLike):
        return "path"
    return "string"


@dataclass(frozen=True)
class Workspace:
    root: Path

    def p(self, name: str) -> str:
        return str(self.root / name)


# The value a required (or deliberately set) parameter gets so the command reaches deep code.
def baseline(command: str, ws: Workspace) -> dict[str, str]:
    by_name = {
        "dir": ws.p("pki"),
        "pki": ws.p("pki"),
        "cluster": "c1",
        "clusters": "c3",
        "sign_key": ws.p("keys/signer.key"),
        "trust": ws.p("keys/signer.pub"),
        "identity": ws.p("keys/operator.key"),
        "recipient": ws.p("keys/operator.pub"),
        "bundle": ws.p("c1.bundle"),
        "passphrase_file": ws.p("pass.txt"),
        "name": "k1",
        "file": ws.p("garbage"),
        "release": ws.p("release"),
        "cluster_name": "c1",
        "network": "net1",
        "mesh_id": "mesh1",
        "namespaces": "shop",
        "version": "1.8.6-asm.8",
        "base_url": f"file://{ws.p('mirror')}",
        "context": "ctx1",
        "key_type": "ecdsa-p256",
        "workers": "1",
        "reason": "keyCompromise",
        "custody_spec": "1-of-1",
        "custodian": ws.p("keys/operator.pub"),
        "requests": ws.p("garbage"),
    }
    per_command: dict[str, dict[str, str]] = {
        "ca init": {"dir": ws.p("newpki")},
        "ca revoke": {"cluster": "c2"},
        "ca rotate": {"cluster": "c2"},
        "ca sign": {"requests": ws.p("c3.csr"), "out": ws.p("signed")},
        "ca request": {"dir": ws.p("jump"), "out": ws.p("c1.request")},
        "bundle create": {"out": ws.p("out.bundle")},
        "keys new": {"out": ws.p("newkeys")},
        "release fetch": {"out": ws.p("downloads")},
        "release extract": {"out": ws.p("extracted")},
        "images pull": {"out": ws.p("out.images")},
        "images push": {"registry": "127.0.0.1:9/mesh"},
    }
    return {**by_name, **per_command.get(command, {})}


def opt(param: Any) -> str | None:
    """The option string of a parameter (None for an argument)."""
    return param.opts[0] if param.param_type_name == "option" else None


def argv_for(command: str, cmd: Any, values: dict[str, str]) -> list[str]:
    argv = command.split()
    for param in cmd.params:
        if param.name not in values:
            continue
        flag = opt(param)
        if flag is None:
            argv.append(values[param.name])
        else:
            argv += [flag, values[param.name]]
    return argv


def needed(cmd: Any, command: str, ws: Workspace) -> dict[str, str]:
    """The baseline values of the parameters this command has (required ones, and the named extras)."""
    base = baseline(command, ws)
    out: dict[str, str] = {}
    for param in cmd.params:
        if kind_of(param) == "flag" or param.name not in base:
            if param.required:
                raise AssertionError(f"{command}: no baseline value for required {param.name}")
            continue
        if param.required or param.name in ("key_type", "workers", "base_url", "passphrase_file", "out"):
            out[param.name] = base[param.name]
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, _pki_template: Path) -> Path:
    """A workspace: PKI (root, c1, c2), keys, a bundle for c1, a passphrase file, odd files."""
    root = tmp_path_factory.mktemp("cli-property")
    shutil.copytree(_pki_template, root / "pki")
    keys = new_keys(root / "keys")
    seal_bundle(
        "c1",
        pki_dir=root / "pki",
        sign_key_path=keys.signer,
        sign_passphrase=None,
        pki_passphrase=PASSPHRASE,
        recipients=[keys.recipient],
        out=root / "c1.bundle",
    )
    (root / "pass.txt").write_bytes(PASSPHRASE + b"\n")
    from airgap.connected.key_request import build_csr
    from airgap.core.keys import generate_private_key

    (root / "c3.csr").write_bytes(build_csr(generate_private_key("ecdsa-p256"), "c3"))
    (root / "kubeconfig").write_text(KUBECONFIG)
    (root / "a-folder").mkdir()
    (root / "empty").write_bytes(b"")
    (root / "garbage").write_bytes(GARBAGE)
    (root / "unreadable").write_bytes(b"secret\n")
    (root / "unreadable").chmod(0)
    (root / "home").mkdir()
    (root / "state").mkdir()
    return root


def path_value(case: str, ws: Workspace) -> str:
    return {
        "missing": ws.p("does-not-exist"),
        "folder": ws.p("a-folder"),
        "empty": ws.p("empty"),
        "garbage": ws.p("garbage"),
        "unreadable": ws.p("unreadable"),
    }[case]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry below ``root``: (size, mtime_ns) of files, (-1, 0) of folders."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = (-1, 0)
        for f in filenames:
            full = os.path.join(dirpath, f)
            st = os.lstat(full)
            out[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns)
    return out


def cases_for(cmd: Any) -> Iterator[tuple[str, str, str]]:
    """(parameter name, case label, value placeholder) for every hostile value of every parameter."""
    for param in cmd.params:
        kind = kind_of(param)
        if kind == "number":
            for v in NUMBERS:
                yield param.name, v, v
        elif kind == "float":
            for v in (*NUMBERS, *FLOATS):
                yield param.name, v, v
        elif kind == "path":
            for c in PATH_CASES:
                yield param.name, c, "@" + c
        elif kind == "string":
            for i, v in enumerate(STRINGS):
                yield param.name, f"string{i}", v


def check(command: str, label: str, argv: list[str], ws: Path, before: dict[str, tuple[int, int]]) -> str | None:
    env = {
        "HOME": str(ws / "home"),
        "AIRGAP_STATE_DIR": str(ws / "state"),
        "AIRGAP_RELEASE_KEYS": str(ws / "release-keys"),
        "AIRGAP_PASSPHRASE": PASSPHRASE.decode(),
        "KUBECONFIG": str(ws / "kubeconfig"),
        "AIRGAP_KUBE_ATTEMPTS": "1",
        "AIRGAP_KUBE_BACKOFF": "0",
        "AIRGAP_KUBE_TIMEOUT": "2",
        "NO_PROXY": "*",
    }
    r = run_cli(*argv, env=env)
    where = f"{command} [{label}] {argv!r}: exit {r.code}\n{r.err[-2000:]}"
    if r.code not in (0, 1, 2, 3, 4, 5):
        return where
    if "Traceback" in r.out + r.err:
        return where + " (traceback)"
    if r.code == 0 or r.code == 2:
        return None
    errors = [line for line in r.err.splitlines() if line.startswith("airgap: error: ")]
    if len(errors) != 1:
        return where + " (not exactly one error line)"
    after = snapshot(ws)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if command == "audit report" and r.code == 1:  # the contract: a page that says the verification failed
        changed = [k for k in changed if not _failing_report_page(ws / k)]
    if changed:
        return where + f" (wrote {changed[:5]})"
    return None


def _failing_report_page(path: Path) -> bool:
    """A complete page of ``audit report`` whose title says the verification failed (written on exit 1)."""
    try:
        page = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return page.rstrip().endswith("</html>") and "<title>Verification FAILED" in page


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_input_crashes_or_half_writes(command: str, template: Path, tmp_path: Path) -> None:
    """Every hostile value of every parameter: a contract exit code, one error line, nothing written."""
    cmd = COMMANDS[command]
    failures: list[str] = []
    for n, (name, label, value) in enumerate(cases_for(cmd)):
        ws_root = tmp_path / f"w{n}"
        shutil.copytree(template, ws_root, symlinks=True)
        (ws_root / "unreadable").chmod(0)
        ws = Workspace(ws_root)
        values = needed(cmd, command, ws)
        values[name] = path_value(value[1:], ws) if value.startswith("@") else value
        argv = argv_for(command, cmd, values)
        cwd = os.getcwd()
        os.chdir(ws_root)
        try:
            before = snapshot(ws_root)
            problem = check(command, f"{name}={label}", argv, ws_root, before)
        finally:
            os.chdir(cwd)
        if problem:
            failures.append(problem)
        shutil.rmtree(ws_root, ignore_errors=True)
    assert not failures, "\n\n".join(failures)


def test_the_tree_covers_every_command() -> None:
    """The command list is read from the app, so it holds the groups' commands and the top level."""
    assert {"ca init", "ca issue", "bundle create", "bundle import", "release fetch", "audit show", "preflight"} <= set(
        COMMANDS
    )
    kinds = {kind_of(p) for p in COMMANDS["ca init"].params}
    assert {"number", "path", "string", "flag"} <= kinds
