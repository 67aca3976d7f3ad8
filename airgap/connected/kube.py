"""Cluster access with the official ``kubernetes`` client, and the one place its errors are translated.

Trusted: the kubeconfig the operator points at (``--context``, ``KUBECONFIG`` or
``~/.kube/config``, read at call time the way kubectl does). Not trusted: anything the API
server answers; every answer is checked for shape before it is used.

* Every request has a connect and a read timeout.
* 5xx, 429 (``Retry-After`` honoured, capped) and dropped or refused connections are retried
  with exponential backoff and jitter, then reported as :class:`~airgap.errors.ClusterError`
  (exit 5) naming the context, the verb and the object.
* Retried writes are safe because callers treat the outcome of a repeated create (409
  AlreadyExists) or a repeated conditional update (409 Conflict) by re-reading the object.
* :meth:`Kube.update` is optimistic concurrency: read, change, write with ``resourceVersion``,
  and on 409 Conflict read again and re-apply the change.

``kubernetes`` and ``urllib3`` are imported inside functions only: offline commands never load them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.core.canonical import load_json
from airgap.core.limits import MAX_KUBE_ANSWER, MAX_KUBE_DEPTH
from airgap.core.retry import Backoff, retry_after
from airgap.errors import AirgapError, ClusterError, InvalidInput, Refused
from airgap.errors import NotFound as InputNotFound

JSON = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """A REST resource: its API prefix, plural and scope."""

    name: str
    prefix: str
    plural: str
    namespaced: bool


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("Namespace", "/api/v1", "namespaces", False),
        Kind("Node", "/api/v1", "nodes", False),
        Kind("Secret", "/api/v1", "secrets", True),
        Kind("Service", "/api/v1", "services", True),
        Kind("Pod", "/api/v1", "pods", True),
        Kind("Deployment", "/apis/apps/v1", "deployments", True),
        Kind("ServiceAccount", "/api/v1", "serviceaccounts", True),
        Kind("ClusterRole", "/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
        Kind("ClusterRoleBinding", "/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
        Kind("Gateway", "/apis/networking.istio.io/v1alpha3", "gateways", True),
        Kind("ConfigMap", "/api/v1", "configmaps", True),
    )
}

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts and retries for one cluster. Tests pass small values to stay quick."""

    attempts: int = 6
    backoff: float = 0.5  # first delay, doubled each retry
    max_backoff: float = 8.0
    max_retry_after: float = 30.0  # a server's Retry-After is honoured up to this
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    conflict_attempts: int = 5  # optimistic-concurrency rounds in Kube.update


DEFAULT_POLICY = RetryPolicy()


def policy_from_env(base: RetryPolicy = DEFAULT_POLICY) -> RetryPolicy:
    """``base`` with overrides from ``AIRGAP_KUBE_ATTEMPTS``, ``AIRGAP_KUBE_BACKOFF``,
    ``AIRGAP_KUBE_MAX_RETRY_AFTER`` and ``AIRGAP_KUBE_TIMEOUT`` (read timeout, seconds)."""
    from dataclasses import replace

    def num(name: str, cast: Callable[[str], float]) -> float | None:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = cast(raw)
        except ValueError as exc:
            raise InvalidInput(f"{name}={raw!r}: not a number") from exc
        if value < 0:
            raise InvalidInput(f"{name}={raw!r}: must not be negative")
        return value

    changes: dict[str, Any] = {}
    if (v := num("AIRGAP_KUBE_ATTEMPTS", int)) is not None:
        changes["attempts"] = max(1, int(v))
    if (v := num("AIRGAP_KUBE_BACKOFF", float)) is not None:
        changes["backoff"] = v
        changes["max_backoff"] = max(v, min(base.max_backoff, v * 16))
    if (v := num("AIRGAP_KUBE_MAX_RETRY_AFTER", float)) is not None:
        changes["max_retry_after"] = v
    if (v := num("AIRGAP_KUBE_TIMEOUT", float)) is not None:
        changes["read_timeout"] = v
    return replace(base, **changes)


class KubeApiError(ClusterError):
    """The server answered with a failure Status (after retries, for retryable codes)."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeApiError):
    """404: the object (or its namespace) does not exist."""


class AlreadyExists(KubeApiError):
    """409 AlreadyExists on create."""


class Conflict(KubeApiError):
    """409 Conflict: our resourceVersion is stale (someone else wrote first)."""


class Invalid(KubeApiError):
    """422: the server rejected the object."""


def _object_name(kind: Kind, name: str | None, namespace: str | None) -> str:
    if name is None:
        return f"{kind.plural}" + (f" in {namespace}" if namespace else "")
    return f"{kind.plural} {namespace}/{name}" if namespace else f"{kind.plural} {name}"


def kubeconfig_path(explicit: Path | None = None) -> str:
    """The kubeconfig to read, as kubectl chooses it: explicit, ``$KUBECONFIG`` (``:``-separated), or the default."""
    if explicit is not None:
        return str(explicit)
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    return str(Path("~/.kube/config").expanduser())


_DOC_CACHE: dict[tuple[str, int, int], JSON] = {}
_DOC_LOCK = threading.Lock()


def _read_kubeconfig(f: Path) -> JSON:
    """One kubeconfig file, parsed once per content (a fleet reads the same file for every cluster)."""
    import yaml

    try:
        st = f.stat()
        key = (str(f), st.st_mtime_ns, st.st_size)
        with _DOC_LOCK:
            if key in _DOC_CACHE:
                return _DOC_CACHE[key]
        text = f.read_text(encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        doc = yaml.load(text, Loader=loader) or {}  # noqa: S506  (a safe loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{f}: cannot read kubeconfig: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput(f"{f}: not a kubeconfig (expected a mapping)")
    with _DOC_LOCK:
        _DOC_CACHE[key] = doc
    return doc


def _existing_files(path: str) -> list[Path]:
    files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
    existing = [f for f in files if f.is_file()]
    if not existing:
        raise InputNotFound(f"{path}: kubeconfig not found (set KUBECONFIG or create ~/.kube/config)")
    return existing


def resolve_context(context: str | None, kubeconfig: Path | None = None) -> tuple[str, str]:
    """(kubeconfig path, context name): ``context`` checked against the kubeconfig, or its current context.

    Several ``KUBECONFIG`` files merge as kubectl merges them: the first file that names a
    context or sets ``current-context`` wins.
    """
    path = kubeconfig_path(kubeconfig)
    names: list[str] = []
    current = ""
    for f in _existing_files(path):
        doc = _read_kubeconfig(f)
        for entry in doc.get("contexts") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"] not in names:
                names.append(entry["name"])
        if not current and isinstance(doc.get("current-context"), str):
            current = doc["current-context"]
    if context is None:
        if not current:
            raise InvalidInput(f"{path}: no current context; pass --context")
        context = current
    if context not in names:
        raise InputNotFound(f"context {context!r} not found in kubeconfig {path}")
    return path, context


class Kube:
    """One cluster, reached through one kubeconfig context. Build it with :func:`connect`."""

    def __init__(
        self,
        api_client: Any,
        context: str,
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        notify: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api_client
        self.context = context
        self.policy = policy
        self.notify = notify or (lambda _msg: None)
        self._sleep = sleep
        self.insecure = False  # the kubeconfig says insecure-skip-tls-verify: writes need --insecure
        self.kubeconfig: str | None = None

    def check_writable(self, what: str = "write") -> None:
        """Refuse (exit 4) writes to a cluster whose API server's identity is not checked (TLS
        verification off in the kubeconfig), unless the command was given ``--insecure``."""
        if self.insecure and not _INSECURE_WRITES[0]:
            raise Refused(
                f"context {self.context}: {what}: refusing to write to a cluster whose TLS certificate is not "
                "verified (insecure-skip-tls-verify in the kubeconfig); pass --insecure to allow it"
            )

    def close(self) -> None:
        try:
            self.api.close()
            self.api.rest_client.pool_manager.clear()
        except Exception:  # noqa: S110  (closing is best effort)
            pass

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One API call with timeouts and retries; returns the decoded JSON answer or raises.

        ``what`` names the verb and object for error messages (``"create secrets istio-system/cacerts"``).
        """
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if method != "GET" and not path.endswith(_REVIEWS):
            self.check_writable(what)
        policy = self.policy
        headers = {"Accept": "application/json", "Content-Type": content_type}
        backoff = Backoff(policy.backoff, policy.max_backoff, jitter=0.25)
        last = "no attempt made"
        for attempt in range(1, policy.attempts + 1):
            wait: float | None = None
            try:
                m, url, hdrs, data, _post = self.api.param_serialize(
                    method=method,
                    resource_path=path,
                    query_params=list(query or []),
                    header_params=dict(headers),
                    body=body,
                    auth_settings=["BearerToken"],
                )
                resp = self.api.call_api(
                    m,
                    url,
                    header_params=hdrs,
                    body=data,
                    _request_timeout=(policy.connect_timeout, policy.read_timeout),
                )
                raw = resp.read()
            except (urllib3.exceptions.HTTPError, OSError, ApiException) as exc:
                if _is_tls_failure(exc):
                    raise ClusterError(
                        f"context {self.context}: {what}: TLS verification failed: {_short(exc)}"
                    ) from exc
                last = f"connection failed: {_short(exc)}"
            else:
                status = int(resp.status)
                if 200 <= status < 300:
                    return _decode(raw, self.context, what)
                doc = _try_decode(raw)
                reason = str(doc.get("reason") or resp.reason or "")
                message = str(doc.get("message") or reason or f"HTTP {status}")
                if status == 429 or (500 <= status < 600 and status != 501):
                    last = f"{status} {reason}: {message}".strip()
                    wait = retry_after(resp.getheader("Retry-After"), policy.max_retry_after)
                else:
                    raise _api_error(self.context, what, status, reason, message)
            if attempt == policy.attempts:
                break
            pause = wait if wait is not None else backoff.delay(attempt)
            self.notify(f"context {self.context}: {what}: {last}; retrying in {pause:.1f}s")
            self._sleep(pause)
        raise ClusterError(f"context {self.context}: {what}: {last} (gave up after {policy.attempts} attempts)")

    # -- verbs -----------------------------------------------------------------------------------

    def _path(self, kind: Kind, namespace: str | None, name: str | None = None) -> str:
        if kind.namespaced and namespace:
            base = f"{kind.prefix}/namespaces/{namespace}/{kind.plural}"
        else:
            base = f"{kind.prefix}/{kind.plural}"
        return f"{base}/{name}" if name else base

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """The object, or None when it does not exist."""
        k = KINDS[kind]
        try:
            return self.request("GET", self._path(k, namespace, name), what=f"get {_object_name(k, name, namespace)}")
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[JSON]:
        """All objects of ``kind`` (in ``namespace`` or everywhere) matching the label ``selector``."""
        k = KINDS[kind]
        query = [("labelSelector", selector)] if selector else []
        doc = self.request(
            "GET", self._path(k, namespace), what=f"list {_object_name(k, None, namespace)}", query=query
        )
        items = doc.get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ClusterError(f"context {self.context}: list {k.plural}: the server's answer has no item list")
        return items

    def create(self, kind: str, obj: JSON, namespace: str | None = None) -> JSON:
        """Create ``obj``; :class:`AlreadyExists` when the name is taken (also after a retried create)."""
        k = KINDS[kind]
        name = str(obj.get("metadata", {}).get("name"))
        return self.request(
            "POST", self._path(k, namespace), what=f"create {_object_name(k, name, namespace)}", body=obj
        )

    def replace(self, kind: str, obj: JSON, namespace: str | None = None) -> JSON:
        """PUT ``obj``; with ``metadata.resourceVersion`` set, :class:`Conflict` if it is stale."""
        k = KINDS[kind]
        name = str(obj["metadata"]["name"])
        return self.request(
            "PUT", self._path(k, namespace, name), what=f"update {_object_name(k, name, namespace)}", body=obj
        )

    def patch(
        self, kind: str, name: str, patch: Any, namespace: str | None = None, *, patch_type: str = "merge"
    ) -> JSON:
        """PATCH with a JSON merge (default), strategic merge or JSON patch."""
        k = KINDS[kind]
        return self.request(
            "PATCH",
            self._path(k, namespace, name),
            what=f"patch {_object_name(k, name, namespace)}",
            body=patch,
            content_type=PATCH_TYPES[patch_type],
        )

    def delete(self, kind: str, name: str, namespace: str | None = None, *, uid: str | None = None) -> None:
        """Delete, optionally only if the object still has ``uid``; a missing object is not an error."""
        k = KINDS[kind]
        body: JSON | None = None
        if uid:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        try:
            self.request(
                "DELETE", self._path(k, namespace, name), what=f"delete {_object_name(k, name, namespace)}", body=body
            )
        except NotFound:
            return

    def update(
        self, kind: str, name: str, change: Callable[[JSON], JSON | None], namespace: str | None = None
    ) -> tuple[JSON, bool]:
        """Optimistic concurrency: read, ``change`` (returns the new object, or None for "nothing to do"),
        write with the read ``resourceVersion``; on 409 Conflict read again and re-apply.

        Returns (object, changed). :class:`NotFound` if the object does not exist.
        """
        k = KINDS[kind]
        for _round in range(self.policy.conflict_attempts):
            current = self.get(kind, name, namespace)
            if current is None:
                raise NotFound(
                    f"context {self.context}: {_object_name(k, name, namespace)} not found",
                    status=404,
                    reason="NotFound",
                )
            wanted = change(json.loads(json.dumps(current)))
            if wanted is None:
                return current, False
            wanted.setdefault("metadata", {})["resourceVersion"] = current["metadata"].get("resourceVersion")
            try:
                return self.replace(kind, wanted, namespace), True
            except Conflict:
                self.notify(f"context {self.context}: {_object_name(k, name, namespace)} changed meanwhile; re-reading")
                continue
        raise ClusterError(
            f"context {self.context}: update {_object_name(k, name, namespace)}: still conflicting after "
            f"{self.policy.conflict_attempts} attempts (someone else keeps changing it)"
        )

    # -- cluster facts ---------------------------------------------------------------------------

    def version(self) -> JSON:
        return self.request("GET", "/version", what="get server version")

    def can_i(self, verb: str, resource: str, *, group: str = "", namespace: str | None = None) -> tuple[bool, str]:
        """SelfSubjectAccessReview: (allowed, reason) for the caller."""
        attrs: JSON = {"verb": verb, "resource": resource, "group": group}
        if namespace:
            attrs["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        doc = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            what=f"check access to {verb} {resource}",
            body=review,
        )
        status = doc.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")


_REVIEWS = ("/selfsubjectaccessreviews", "/selfsubjectrulesreviews")  # questions, not writes
_INSECURE_WRITES = [False]  # set by the CLI's --insecure (allow_insecure_writes)
_WARNED: set[str] = set()
_WARN_LOCK = threading.Lock()


def allow_insecure_writes(allowed: bool) -> None:
    """``--insecure``: let this process write to contexts with ``insecure-skip-tls-verify``."""
    _INSECURE_WRITES[0] = allowed


def _warn_insecure(context: str) -> None:
    """One warning per context and process, instead of urllib3's warning on every request."""
    import sys
    import warnings

    import urllib3

    warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    with _WARN_LOCK:
        if context in _WARNED:
            return
        _WARNED.add(context)
    print(
        f"airgap: warning: context {context}: insecure-skip-tls-verify is set: the API server's certificate "
        "is not verified, anyone on the path can read and change what is sent",
        file=sys.stderr,
        flush=True,
    )


# Importing the kubernetes package from two threads at once can see it half-initialised
# ("cannot import name 'ApiClient'"): the first connect() imports it under this lock.
_IMPORT_LOCK = threading.Lock()


def connect(
    context: str | None,
    *,
    kubeconfig: Path | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    notify: Callable[[str], None] | None = None,
) -> Kube:
    """A :class:`Kube` for ``context`` (absent: the kubeconfig's current context). Makes no request."""
    with _IMPORT_LOCK:  # fleets connect from several threads; the kubernetes package must be imported once
        import urllib3
        from kubernetes.client import ApiClient, Configuration
        from kubernetes.client.exceptions import ApiException  # noqa: F401 (used by Kube.request)
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigMerger

        from airgap.connected.credentials import loader_class, quiet_client_logging

    quiet_client_logging()
    path, name = resolve_context(context, kubeconfig)
    cfg = Configuration()
    files = _existing_files(path)
    loader_cls = loader_class()  # runs exec credential plugins itself: one line on failure, no request
    try:
        if len(files) == 1:  # the common case: reuse the parsed file; relative paths resolve beside it
            loader = loader_cls(
                config_dict=copy.deepcopy(_read_kubeconfig(files[0])),
                active_context=name,
                config_base_path=str(files[0].parent),
            )
        else:  # several files: the client's own merge, as kubectl merges them
            merged = KubeConfigMerger(path)  # type: ignore[no-untyped-call]
            loader = loader_cls(config_dict=merged.config, active_context=name, config_base_path=None)
        loader.load_and_set(cfg)
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"context {name}: cannot load credentials from {path}: {exc}") from exc
    # Retries are ours (with backoff and Retry-After); urllib3 must not retry behind our back.
    cfg.retries = urllib3.Retry(
        total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False, raise_on_redirect=False
    )
    kube = Kube(ApiClient(configuration=cfg), name, policy, notify=notify)
    kube.kubeconfig = path  # the file(s) it came from: mesh status compares remote secrets' servers with it
    if not cfg.verify_ssl:
        _warn_insecure(name)
        kube.insecure = True
    return kube


# -- helpers --------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = str(exc).strip() or type(exc).__name__
    text = text.splitlines()[0]
    return text if len(text) < 200 else text[:197] + "..."


def _is_tls_failure(exc: BaseException) -> bool:
    text = f"{exc} {getattr(exc, 'reason', '')}"
    return (
        "CERTIFICATE_VERIFY_FAILED" in text
        or "certificate verify failed" in text
        or ("hostname" in text.lower() and "match" in text.lower())
    )


def _try_decode(raw: bytes | None) -> JSON:
    try:
        doc = load_json(raw or b"{}", what="answer", max_bytes=MAX_KUBE_ANSWER, max_depth=MAX_KUBE_DEPTH)
    except AirgapError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _decode(raw: bytes | None, context: str, what: str) -> JSON:
    doc = load_json(
        raw or b"{}",
        what=f"context {context}: {what}: the server's answer",
        max_bytes=MAX_KUBE_ANSWER,
        max_depth=MAX_KUBE_DEPTH,
        error=ClusterError,
        invalid="is not JSON",
    )
    if not isinstance(doc, dict):
        raise ClusterError(f"context {context}: {what}: the server's answer is not a JSON object")
    return doc


def _api_error(context: str, what: str, status: int, reason: str, message: str) -> KubeApiError:
    text = f"context {context}: {what}: {status} {reason}: {message}"
    cls: type[KubeApiError] = KubeApiError
    if status == 404:
        cls = NotFound
    elif status == 409 and reason == "AlreadyExists":
        cls = AlreadyExists
    elif status == 409:
        cls = Conflict
    elif status == 422:
        cls = Invalid
    elif status == 401:
        text = f"context {context}: {what}: 401 Unauthorized: the credentials in the kubeconfig were refused"
    elif status == 403:
        text = f"context {context}: {what}: 403 Forbidden: {message}"
    return cls(text, status=status, reason=reason)


def secret_value(data: Any, key: str) -> bytes | None:
    """``data[key]`` of a Secret's ``data`` map, base64-decoded; None when absent, empty or not base64.

    Trust: ``data`` comes from a cluster; nothing here trusts it beyond decoding."""
    raw = data.get(key) if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
