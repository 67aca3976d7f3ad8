"""Kubeconfig ``exec`` credential plugins, run by airgap instead of by the kubernetes client.

Trust: the kubeconfig names the plugin (trusted, like the rest of the kubeconfig). Not trusted:
what the plugin prints. Its stderr may hold a token or a login URL and is never shown; its stdout
must be an ``ExecCredential`` of the apiVersion the kubeconfig asked for, with a token or a client
certificate and key. A plugin that cannot start, times out, exits non-zero or answers anything
else stops the command with one line (``the credential plugin for context X failed (exit N)``)
before any request is sent: the kubernetes client would log the plugin's stderr through Python's
root logger and then send the request without credentials.

The plugin runs through :mod:`airgap.core.subproc` (scrubbed environment plus the kubeconfig's
``env`` entries and ``KUBERNETES_EXEC_INFO``), non-interactively (stdin closed), in the folder of
the kubeconfig, with a timeout. A token is read once per command; its ``expirationTimestamp`` is
not refreshed (airgap's commands are short; a long ``--wait`` may outlive a very short token).
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping
from typing import Any

from airgap.errors import ClusterError, InvalidInput

PLUGIN_TIMEOUT = 120.0  # seconds: a cloud CLI that refreshes a token over the network
MAX_PLUGIN_OUTPUT = 1024 * 1024


def run_exec_plugin(
    exec_config: Mapping[str, Any], *, context: str, cwd: str | None, cluster: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run the plugin of ``exec_config``; return the ``status`` of its ``ExecCredential``."""
    from airgap.core import subproc

    command, api_version = exec_config.get("command"), exec_config.get("apiVersion")
    if not isinstance(command, str) or not command or not isinstance(api_version, str):
        raise InvalidInput(f"context {context}: the kubeconfig's exec plugin needs a command and an apiVersion")
    args = [str(a) for a in (exec_config.get("args") or [])]
    env: dict[str, str] = {}
    for item in exec_config.get("env") or []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            env[item["name"]] = str(item.get("value", ""))
    spec: dict[str, Any] = {"interactive": False}
    if exec_config.get("provideClusterInfo") and cluster is not None:
        spec["cluster"] = dict(cluster)
    env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "spec": spec})
    failed = f"the credential plugin for context {context} failed"
    try:
        proc = subproc.run(
            [command, *args],
            env=env,
            cwd=cwd or None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PLUGIN_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InvalidInput(f"{failed}: {command!r} not found") from exc
    except ValueError as exc:  # subproc refuses to pass a secret-named variable
        raise InvalidInput(f"{failed}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{failed} (no answer within {PLUGIN_TIMEOUT:g} s)") from exc
    except OSError as exc:
        raise ClusterError(f"{failed} ({exc.strerror or type(exc).__name__})") from exc
    if proc.returncode != 0:
        raise ClusterError(f"{failed} (exit {proc.returncode})")
    return _status(proc.stdout, api_version, failed)


def _status(stdout: bytes, api_version: str, failed: str) -> dict[str, Any]:
    from airgap.core.canonical import load_json

    def not_a_credential(_why: str) -> ClusterError:  # the why could quote the plugin's output: not shown
        return ClusterError(f"{failed} (its answer is not an ExecCredential)")

    doc = load_json(stdout, what="credential plugin answer", max_bytes=MAX_PLUGIN_OUTPUT, error=not_a_credential)
    status = doc.get("status") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential" or not isinstance(status, dict):
        raise ClusterError(f"{failed} (its answer is not an ExecCredential)")
    if doc.get("apiVersion") != api_version:
        raise ClusterError(f"{failed} (it answered apiVersion {str(doc.get('apiVersion'))!r}, not {api_version!r})")
    token, cert, key = status.get("token"), status.get("clientCertificateData"), status.get("clientKeyData")
    if isinstance(token, str) and token:
        return status
    if isinstance(cert, str) and cert and isinstance(key, str) and key:
        return status
    raise ClusterError(f"{failed} (its answer holds no token and no client certificate and key)")


def quiet_client_logging() -> None:
    """The kubernetes client logs errors (a plugin's stderr among them) through the root logger and
    urllib3 warns through its own: none of it reaches the terminal; airgap reports errors itself."""
    for name in ("kubernetes", "urllib3"):
        log = logging.getLogger(name)
        log.setLevel(logging.CRITICAL + 1)
        log.propagate = False
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())  # no "last resort" printing of the client's logging.error()


def loader_class() -> type:
    """A ``KubeConfigLoader`` whose exec plugins are run by :func:`run_exec_plugin`."""
    from kubernetes.config.kube_config import FileOrData, KubeConfigLoader

    class Loader(KubeConfigLoader):
        def _load_from_exec_plugin(self) -> bool | None:
            me: Any = self  # the client's attributes are untyped
            if "exec" not in me._user:
                return None
            base_path = me._get_base_path(me._cluster.path)
            status = run_exec_plugin(
                getattr(me._user["exec"], "value", me._user["exec"]),  # the client's ConfigNode: its dict
                context=str(me._current_context["name"]),
                cwd=base_path,
                cluster=getattr(me._cluster, "value", None),
            )
            if isinstance(status.get("token"), str) and status["token"]:
                me.token = f"Bearer {status['token']}"
                return True
            make: Any = FileOrData
            for attr, key in (("cert_file", "clientCertificateData"), ("key_file", "clientKeyData")):
                source = make(
                    status,
                    None,
                    data_key_name=key,
                    file_base_path=base_path,
                    base64_file_content=False,
                    temp_file_path=me._temp_file_path,
                )
                setattr(me, attr, source.as_file())
            return True

    return Loader


__all__ = ["loader_class", "quiet_client_logging", "run_exec_plugin"]
