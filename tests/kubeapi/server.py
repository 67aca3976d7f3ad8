"""A Kubernetes API emulator on loopback over HTTPS, for the tests (NOT a real cluster).

:class:`Emulator` serves the REST paths airgap and the guide's kubectl commands use (semantics in
:mod:`tests.kubeapi.store` and :mod:`tests.kubeapi.validation`), authenticates bearer tokens and
client certificates, authorizes every request with RBAC (:mod:`tests.kubeapi.rbac`), serves
discovery, OpenAPI v3 and Table output, decodes kubectl's protobuf bodies, injects faults on
request (:class:`Faults`), runs a small controller that marks pods Ready, rolls deployments out,
finalizes Terminating namespaces and plays the sidecar injector (only for a revision whose
istiod is installed), and writes a kubeconfig the official client and kubectl can use.

It is a test double, not a cluster: see ``tests/kubeapi/README.md`` for what still differs.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.kubeapi import discovery, openapi, rbac
from tests.kubeapi.errors import REASONS
from tests.kubeapi.protobuf import ProtobufError, decode_protobuf
from tests.kubeapi.store import (
    JSON,
    RESOURCES,
    ApiError,
    ResourceDef,
    Store,
    WriteOptions,
    now_iso,
    parse_field_selector,
    parse_selector,
)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
INJECT_LABEL = "istio.io/rev"
SA_NAME = "kubernetes.io/service-account.name"
MAX_REQUEST_BYTES = 3 * 1024 * 1024  # kube-apiserver's limit on a request body
DEFAULT_VERSION = "v1.32.4"  # a current server; ASM 1.8 tests choose 1.16-1.19 (see fixtures.ASM_VERSION)
ADMIN = rbac.User("kubernetes-admin", ("system:masters", "system:authenticated"))
_NOT_FOUND = "the server could not find the requested resource"
_UNKNOWN = "X-Emulator-Unknown-Fields"


def decode_body(raw: bytes, ctype: str) -> Any:
    """A request body: JSON (also for the patch types), YAML, or kubectl's protobuf envelope."""
    if not raw:
        return None
    if ctype == "application/vnd.kubernetes.protobuf":
        try:
            return decode_protobuf(raw)
        except ProtobufError as exc:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {exc}") from exc
    if ctype in ("application/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ApiError(400, "BadRequest", f"error decoding YAML: {exc}") from exc
    if ctype not in ("", "application/json") and not ctype.endswith("+json"):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: application/json, "
            f'application/yaml, application/vnd.kubernetes.protobuf (got "{ctype}")',
        )
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {exc}") from exc


def parse_version(text: str) -> tuple[int, int]:
    major, minor = text.lstrip("v").split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()))


_CA_LOCK = threading.Lock()
_CA: Any = None


def _trust_ca() -> Any:
    """One throwaway CA per process (trustme) for every emulator's serving certificate."""
    global _CA
    with _CA_LOCK:
        if _CA is None:
            import trustme

            _CA = trustme.CA()
        return _CA


# ---------------------------------------------------------------------------------------------
# faults


@dataclass
class Fault:
    """One injected fault: applies to the next ``count`` requests matching ``method``/``path``."""

    kind: str  # "status" | "drop" | "drop_after" | "delay"
    count: int
    method: str | None = None
    path: str | None = None  # substring of the request path
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0
    reason: str = ""  # default: the real server's reason for ``status`` (409 Conflict, 503 ServiceUnavailable, ...)
    message: str = ""

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path in path)


@dataclass
class Gate:
    """Holds matching requests until released; ``apply=False`` drops them unprocessed."""

    method: str | None
    path: str | None
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    apply: bool = True
    once: bool = True

    def release(self, *, apply: bool = True) -> None:
        self.apply = apply
        self.released.set()


class Faults:
    """The fault plan of one emulator; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._gates: list[Gate] = []
        self._hooks: list[tuple[str | None, str | None, Callable[[], None]]] = []
        self.latency = 0.0  # added to every request (simulated network round trip)

    def fail(
        self,
        count: int,
        status: int = 503,
        *,
        method: str | None = None,
        path: str | None = None,
        reason: str = "",
        message: str = "",
    ) -> None:
        """The next ``count`` matching requests answer ``status`` with a Status body.

        ``reason`` defaults to the real server's for that code (``fail(1, 409, reason="AlreadyExists")``
        makes a 409 that looks like a lost create race rather than a stale update).
        """
        with self._lock:
            self._faults.append(Fault("status", count, method, path, status=status, reason=reason, message=message))

    def throttle(self, count: int, retry_after: int = 1, *, method: str | None = None, path: str | None = None) -> None:
        """The next ``count`` matching requests answer 429 with ``Retry-After``."""
        with self._lock:
            self._faults.append(Fault("status", count, method, path, status=429, retry_after=retry_after))

    def drop(
        self, count: int, *, after_write: bool = False, method: str | None = None, path: str | None = None
    ) -> None:
        """Close the connection without an answer: before processing, or after applying the request."""
        with self._lock:
            self._faults.append(Fault("drop_after" if after_write else "drop", count, method, path))

    def slow(self, count: int, delay: float, *, method: str | None = None, path: str | None = None) -> None:
        """Delay the next ``count`` matching requests by ``delay`` seconds before answering."""
        with self._lock:
            self._faults.append(Fault("delay", count, method, path, delay=delay))

    def hold(self, *, method: str | None = None, path: str | None = None) -> Gate:
        """Hold the next matching request until the returned gate is released."""
        gate = Gate(method, path)
        with self._lock:
            self._gates.append(gate)
        return gate

    def before(self, hook: Callable[[], None], *, method: str | None = None, path: str | None = None) -> None:
        """Run ``hook`` once, just before the next matching request is processed (a racing writer)."""
        with self._lock:
            self._hooks.append((method, path, hook))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._gates.clear()
            self._hooks.clear()
            self.latency = 0.0

    def take(self, method: str, path: str) -> tuple[Fault | None, Gate | None, Callable[[], None] | None]:
        with self._lock:
            fault = next((f for f in self._faults if f.count > 0 and f.matches(method, path)), None)
            if fault is not None:
                fault.count -= 1
            gate = next(
                (g for g in self._gates if (g.method in (None, method)) and (g.path is None or g.path in path)), None
            )
            if gate is not None and gate.once:
                self._gates.remove(gate)
            hook = None
            for i, (m, p, h) in enumerate(self._hooks):
                if m in (None, method) and (p is None or p in path):
                    hook = h
                    del self._hooks[i]
                    break
            return fault, gate, hook


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int  # 0 when the connection was dropped
    content_type: str = ""
    user: str = ""
    unknown_fields: tuple[str, ...] = ()  # fields the kind does not have, whatever fieldValidation did with them


# ---------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        raw = self.request
        raw.settimeout(30)
        try:
            self.request = self.server.ssl_context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _peer_cert(self) -> dict[str, Any] | None:
        try:
            cert = self.request.getpeercert()
        except (AttributeError, ValueError, ssl.SSLError):
            return None
        return cert or None

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def _serve(self, method: str) -> None:
        emu = self.server.emulator
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            emu.record(Request(method, path, 413, ""))
            self.close_connection = True
            left = min(length, 4 * MAX_REQUEST_BYTES)  # drain what a client sends before it reads the answer
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
            err = ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_REQUEST_BYTES}")
            self._send(413, err.status(), {"Connection": "close"})  # the client must not reuse this socket
            return
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        accept = self.headers.get("Accept") or ""
        if emu.faults.latency:
            time.sleep(emu.faults.latency)
        fault, gate, hook = emu.faults.take(method, path)
        if gate is not None:
            gate.arrived.set()
            gate.released.wait(60)
            if not gate.apply:
                emu.record(Request(method, path, 0, ctype))
                self._drop()
                return
        if fault is not None and fault.kind == "drop":
            emu.record(Request(method, path, 0, ctype))
            self._drop()
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "status":
            reason = fault.reason or REASONS.get(fault.status, "InternalError" if fault.status >= 500 else "BadRequest")
            err = ApiError(fault.status, reason, f"injected fault: {fault.message or reason}")
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            emu.record(Request(method, path, fault.status, ctype))
            self._send(fault.status, err.status(), headers)
            return
        user = emu.authenticate(self.headers.get("Authorization") or "", self._peer_cert())
        if user is None:
            emu.record(Request(method, path, 401, ctype))
            self._send(401, ApiError(401, "Unauthorized", "Unauthorized").status())
            return
        if hook is not None:
            hook()
        headers = {}
        try:
            body = decode_body(raw, ctype)
            code, doc, headers = emu.handle(method, path, parse_qs(url.query), ctype, body, user=user, accept=accept)
        except _Watch as w:
            emu.record(Request(method, path, 200, ctype, user.name))
            self._stream(w)
            return
        except ApiError as exc:
            code, doc = exc.code, exc.status()
        except Exception as exc:  # an emulator bug: answer like the server's panic handler, keep serving
            code = 500
            doc = ApiError(
                500, "InternalError", f"Internal error occurred: emulator: {type(exc).__name__}: {exc}"
            ).status()
        unknown = tuple(headers.pop(_UNKNOWN, "").split(",")) if _UNKNOWN in headers else ()
        emu.record(Request(method, path, code, ctype, user.name, unknown))
        if fault is not None and fault.kind == "drop_after":
            self._drop()
            return
        self._send(code, doc, headers)

    def _stream(self, w: _Watch) -> None:
        """A watch: ADDED/MODIFIED/DELETED events, one JSON object per chunk, until timeoutSeconds."""
        emu = self.server.emulator
        store = emu.store
        try:
            timeout = min(float(w.query.get("timeoutSeconds") or 60), 300.0)
        except ValueError:
            timeout = 60.0
        try:
            since = int(w.query.get("resourceVersion") or 0)
            labels = parse_selector(w.query.get("labelSelector", ""))
            fields = parse_field_selector(w.query.get("fieldSelector", ""))
            with store.lock:
                initial = [] if since else store.list(w.rd, w.namespace)["items"]
                since = since or int(store.resource_version)
        except (ApiError, ValueError) as exc:
            err = exc if isinstance(exc, ApiError) else ApiError(400, "BadRequest", f"resourceVersion: {exc}")
            self._send(err.code, err.status())
            return

        def wanted(plural: str, obj: JSON) -> bool:
            meta = obj.get("metadata") or {}
            if plural != w.rd.plural or (w.namespace and meta.get("namespace") != w.namespace):
                return False
            f = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
            return all(r.matches(meta.get("labels") or {}) for r in labels) and all(r.matches(f) for r in fields)

        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def event(kind: str, obj: JSON) -> None:
                data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            for obj in initial:
                if wanted(w.rd.plural, obj):
                    event("ADDED", obj)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not emu._stop.is_set():
                with store.changed:
                    pending = [e for e in store.events if e[0] > since]
                    if not pending:
                        store.changed.wait(timeout=0.05)
                        continue
                since = pending[-1][0]
                for _rv, kind, plural, obj in pending:
                    if wanted(plural, obj):
                        event(kind, obj)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            return

    def _send(self, code: int, doc: JSON, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, emulator: Emulator, ssl_context: ssl.SSLContext) -> None:
        self.emulator = emulator
        self.ssl_context = ssl_context
        super().__init__(("127.0.0.1", 0), _Handler)


# ---------------------------------------------------------------------------------------------
# the emulator


def _template_hash(template: JSON) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _pod_ready(pod: JSON) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


class Emulator:
    """One emulated cluster: an HTTPS server, its store, its fault plan and its controller.

    >>> with Emulator(name="c1") as emu:
    ...     emu.write_kubeconfig(path)
    """

    def __init__(
        self,
        *,
        name: str = "emulated",
        version: str = DEFAULT_VERSION,
        nodes: int = 4,
        node_cpu: str = "4",
        node_memory: str = "16Gi",
        ready_delay: float = 0.05,
        tick: float = 0.02,
    ) -> None:
        self.name = name
        self.token = uuid.uuid4().hex
        self.version = version
        self.ready_delay = ready_delay
        self.tick = tick
        self.store = Store(parse_version(version))
        self.faults = Faults()
        # (verb, resource) refused to the admin too, in requests and SelfSubjectAccessReviews alike:
        # an emulator-only knob (real RBAC cannot take a superuser's rights away).
        self.denied: set[tuple[str, str]] = set()
        self.users: dict[str, rbac.User] = {self.token: ADMIN}
        self.cert_users: dict[str, Any] = {}  # user name -> trustme LeafCert
        self.tokens: dict[str, str] = {}  # service-account tokens the token controller issued -> user
        self.namespace_finalize_delay = 0.05
        # The istiod stand-in (tests only, see README): None = off; else seconds after a cacerts
        # root-cert.pem is first seen before it is copied into istio-ca-root-cert ConfigMaps.
        self.root_publish_delay: float | None = None
        self._root_seen: tuple[str, float] | None = None
        self.proxy_images: dict[str, str] = {}  # revision -> the sidecar image its injector uses
        self.requests: list[Request] = []
        self._req_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: _Server | None = None
        self._seed(nodes, node_cpu, node_memory)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Emulator:
        ca = _trust_ca()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        # Client certificates are optional (tokens work too); those the test CA issued are users.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ca.configure_trust(ctx)
        self._server = _Server(self, ctx)
        t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        c = threading.Thread(target=self._controller, daemon=True)
        c.start()
        self._threads = [t, c]
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "emulator not started"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def version(self) -> str:
        return self._version

    @version.setter
    def version(self, value: str) -> None:
        self._version = value
        if hasattr(self, "store"):
            self.store.version = parse_version(value)

    def kubeconfig_entry(self, context: str | None = None, user: str | None = None) -> tuple[JSON, JSON, JSON]:
        """(cluster, user, context) entries for a kubeconfig; ``user`` one made by :meth:`add_user`."""
        ctx = context or self.name
        ca_pem = _trust_ca().cert_pem.bytes()
        creds: JSON
        if user is not None and user in self.cert_users:
            leaf = self.cert_users[user]
            creds = {
                "client-certificate-data": base64.b64encode(leaf.cert_chain_pems[0].bytes()).decode(),
                "client-key-data": base64.b64encode(leaf.private_key_pem.bytes()).decode(),
            }
        else:
            token = self.token if user is None else next(t for t, u in self.users.items() if u.name == user)
            creds = {"token": token}
        return (
            {
                "name": ctx,
                "cluster": {"server": self.url, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            },
            {"name": ctx, "user": creds},
            {"name": ctx, "context": {"cluster": ctx, "user": ctx}},
        )

    def write_kubeconfig(self, path: Path, context: str | None = None, user: str | None = None) -> Path:
        return write_kubeconfig(path, [(context or self.name, self, user)])

    # -- users and RBAC ------------------------------------------------------------------------

    def add_user(self, name: str, groups: tuple[str, ...] = ()) -> str:
        """A user who authenticates with a bearer token (returned) and has only what RBAC grants."""
        token = uuid.uuid4().hex
        self.users[token] = rbac.User(name, (*groups, "system:authenticated"))
        return token

    def add_cert_user(self, name: str, group: str | None = None) -> None:
        """A user who authenticates with a client certificate (CN = user, O = group), as kube-apiserver maps them."""
        self.cert_users[name] = _trust_ca().issue_cert(
            f"{name.replace('@', '.').replace(':', '-')}.client.emulator", common_name=name, organization_name=group
        )

    def authenticate(self, header: str, cert: dict[str, Any] | None = None) -> rbac.User | None:
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :]
            sa = self.tokens.get(token)
            if sa is not None:  # system:serviceaccount:NS:NAME, with its groups; RBAC decides the rest
                ns = sa.split(":")[2]
                return rbac.User(sa, ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"))
            return self.users.get(token)
        if header or not cert:
            return None
        subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
        groups = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "organizationName"]
        name = subject.get("commonName")
        if not name or name not in self.cert_users:
            return None  # signed by the test CA (a serving certificate, say) but not a user of this cluster
        return rbac.User(name, (*groups, "system:authenticated"))

    def grant(
        self,
        user: str,
        verbs: list[str],
        resources: list[str],
        *,
        group: str = "",
        namespace: str | None = None,
        names: list[str] | None = None,
    ) -> str:
        """A (Cluster)Role with one rule and its binding to ``user`` (a RoleBinding when ``namespace``);
        returns the binding's name (the role has the same)."""
        rule: JSON = {"apiGroups": [group], "resources": resources, "verbs": verbs}
        if names:
            rule["resourceNames"] = names
        name = f"{user}-{'-'.join(verbs)}-{'-'.join(resources)}".replace("*", "all")[:200]
        ref_kind = "Role" if namespace else "ClusterRole"
        role_plural = "roles" if namespace else "clusterroles"
        if self.get(role_plural, namespace, name) is None:
            self.create(role_plural, namespace, {"metadata": {"name": name}, "rules": [rule]})
        self.create(
            "rolebindings" if namespace else "clusterrolebindings",
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": rbac.RBAC_GROUP, "kind": ref_kind, "name": name},
                "subjects": [{"apiGroup": rbac.RBAC_GROUP, "kind": "User", "name": user}],
            },
        )
        return name

    def can(self, user: rbac.User, attrs: rbac.Attributes) -> tuple[bool, str]:
        if (attrs.verb, attrs.resource) in self.denied or ("*", attrs.resource) in self.denied:
            return False, "denied by the emulator's RBAC setting"
        with self.store.lock:
            return rbac.authorize(self.store.objects, user, attrs)

    def record(self, req: Request) -> None:
        with self._req_lock:
            self.requests.append(req)

    def requests_for(self, method: str, path_contains: str) -> list[Request]:
        with self._req_lock:
            return [r for r in self.requests if r.method == method and path_contains in r.path]

    # -- direct access for tests (bypasses HTTP and faults) ------------------------------------

    def get(self, plural: str, namespace: str | None, name: str) -> JSON | None:
        rd = _rd(plural)
        try:
            return self.store.get(rd, namespace, name)
        except ApiError:
            return None

    def list(self, plural: str, namespace: str | None = None, selector: str = "") -> list[JSON]:
        items: list[JSON] = self.store.list(_rd(plural), namespace, selector)["items"]
        return items

    def create(self, plural: str, namespace: str | None, obj: JSON) -> JSON:
        return self.store.create(_rd(plural), namespace, obj)

    def patch(self, plural: str, namespace: str | None, name: str, patch: JSON) -> JSON:
        return self.store.patch(_rd(plural), namespace, name, "application/merge-patch+json", patch)

    def delete(self, plural: str, namespace: str | None, name: str) -> JSON:
        """Delete at once (a namespace too: no Terminating phase, unlike a DELETE over HTTP)."""
        obj = self.store.delete(_rd(plural), namespace, name)
        if plural == "namespaces":
            with self.store.lock:
                self.store.terminating[name] = float("-inf")
                self.store.finalize_namespaces()
        return obj

    def add_deployment(
        self, namespace: str, name: str, labels: dict[str, str], *, replicas: int = 1, ensure_namespace: bool = True
    ) -> JSON:
        """A workload for the controller to run (pods get the namespace's injection label)."""
        if ensure_namespace and self.get("namespaces", None, namespace) is None:
            self.create("namespaces", None, {"metadata": {"name": namespace}})
        return self.create(
            "deployments",
            namespace,
            {
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {"containers": [{"name": name, "image": f"example/{name}:1"}]},
                    },
                },
            },
        )

    def simulate_istio_install(
        self, revision: str, *, ingress: bool = True, replicas: int = 1, proxy_image: str | None = None
    ) -> None:
        """What ``istioctl install`` leaves behind that airgap waits for: istiod and the ingress gateway
        (and, with ``proxy_image``, the sidecar image the revision's injector uses)."""
        if proxy_image:
            self.proxy_images[revision] = proxy_image
        else:  # installed again without a pinned image: the injector is back to hub/proxyv2:tag
            self.proxy_images.pop(revision, None)
        if self.get("namespaces", None, "istio-system") is None:
            self.create("namespaces", None, {"metadata": {"name": "istio-system"}})
        name = f"istiod-{revision}" if revision != "default" else "istiod"
        if self.get("deployments", "istio-system", name) is None:
            labels = {"app": "istiod", "istio.io/rev": revision, "istio": "pilot"}
            self.add_deployment("istio-system", name, labels, replicas=replicas)
        if ingress and self.get("deployments", "istio-system", "istio-ingressgateway") is None:
            labels = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
            self.add_deployment("istio-system", "istio-ingressgateway", labels, replicas=replicas)

    def simulate_gateway(self, name: str, labels: dict[str, str], *, replicas: int = 1) -> None:
        """A gateway-only ``istioctl install`` (profile ``empty``): the gateway's Deployment."""
        if self.get("deployments", "istio-system", name) is None:
            self.add_deployment("istio-system", name, labels, replicas=replicas)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until the controller has nothing left to do (all deployments rolled out, pods Ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._settled():
                return
            time.sleep(self.tick)
        raise TimeoutError(f"emulator {self.name}: controller did not settle")

    # -- seeding -------------------------------------------------------------------------------

    def _seed(self, nodes: int, cpu: str, memory: str) -> None:
        for ns in SYSTEM_NAMESPACES:
            self.create("namespaces", None, {"metadata": {"name": ns}})
        rbac.seed(self.create)
        for i in range(nodes):
            self.create(
                "nodes",
                None,
                {
                    "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"}},
                    "status": {
                        "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                        "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                },
            )
        self.create(
            "services",
            "default",
            {
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
            },
        )
        self.create(
            "services",
            "kube-system",
            {
                "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    ]
                },
            },
        )

    def set_nodes(self, count: int, *, cpu: str = "4", memory: str = "16Gi") -> None:
        for node in self.list("nodes"):
            self.delete("nodes", None, node["metadata"]["name"])
        for i in range(count):
            self.create(
                "nodes",
                None,
                {
                    "metadata": {"name": f"node-{i}"},
                    "status": {
                        "allocatable": {"cpu": cpu, "memory": memory},
                        "capacity": {"cpu": cpu, "memory": memory},
                    },
                },
            )

    # -- REST dispatch -------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        ctype: str,
        body: Any,
        *,
        user: rbac.User = ADMIN,
        accept: str = "application/json",
    ) -> tuple[int, JSON, dict[str, str]]:
        """One request: (code, body, extra headers); raises :class:`ApiError` for failures."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        q = {k: v[0] for k, v in query.items()}
        if method == "GET":
            doc = self._nonresource(parts, q)
            if doc is not None:
                return 200, doc, {}
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
            if parts[2] != ("v1" if group == "authorization.k8s.io" else _group_version(group)):
                raise ApiError(404, "NotFound", _NOT_FOUND)
            if group == "authorization.k8s.io" and rest == ["selfsubjectaccessreviews"] and method == "POST":
                return self._ssar(body, user)
        else:
            raise ApiError(404, "NotFound", _NOT_FOUND)
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            raise ApiError(404, "NotFound", _NOT_FOUND)
        rd = RESOURCES.get((group, rest[0]))
        if rd is None or (namespace is not None and not rd.namespaced):
            raise ApiError(404, "NotFound", _NOT_FOUND)
        name = rest[1] if len(rest) == 2 else None
        verb = {
            "GET": "list" if name is None else "get",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name is not None else "deletecollection",
        }.get(method, method.lower())
        if verb == "list" and q.get("watch") in ("true", "1"):
            verb = "watch"
        attrs_name = name or ""
        if verb == "create" and isinstance(body, dict):
            attrs_name = ""
        # As the real RequestInfo: a request on a namespace object is "in" that namespace.
        attrs_ns = name if rd.plural == "namespaces" and name else namespace or ""
        attrs = rbac.Attributes(verb, group, rd.plural, attrs_ns, attrs_name)
        allowed, _why = self.can(user, attrs)
        if not allowed:
            raise rbac.forbidden(user, attrs)
        opts = self._write_options(q, method)
        store = self.store
        headers: dict[str, str] = {}

        def done(code: int, doc: JSON) -> tuple[int, JSON, dict[str, str]]:
            if opts.unknown:
                headers[_UNKNOWN] = ",".join(opts.unknown)  # recorded, not sent
            if opts.warnings:
                headers["Warning"] = ", ".join(
                    f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in opts.warnings
                )
            return code, doc, headers

        if name is None:
            if method == "GET":
                if verb == "watch":
                    raise _Watch(rd, namespace, q)
                doc = store.list(rd, namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
                if discovery.wants_table(accept):
                    return 200, discovery.table(rd, doc["items"], doc["metadata"]["resourceVersion"]), {}
                return 200, doc, {}
            if method == "POST":
                if rd.namespaced and namespace is None:
                    raise ApiError(
                        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                    )
                return done(201, store.create(rd, namespace, body, opts))
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if rd.namespaced and namespace is None:
            raise ApiError(404, "NotFound", _NOT_FOUND)
        if method == "GET":
            obj = store.get(rd, namespace, name)
            if discovery.wants_table(accept):
                return 200, discovery.table(rd, [obj], obj["metadata"]["resourceVersion"]), {}
            return 200, obj, {}
        if method == "PUT":
            return done(200, store.update(rd, namespace, name, body, opts))
        if method == "PATCH":
            return done(200, store.patch(rd, namespace, name, ctype, body, opts))
        if method == "DELETE":
            return done(200, store.delete(rd, namespace, name, body, opts))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _write_options(self, q: dict[str, str], method: str) -> WriteOptions:
        dry = q.get("dryRun", "")
        if dry not in ("", "All"):
            raise ApiError(400, "BadRequest", f'dryRun: Unsupported value: "{dry}": supported values: "All"')
        fv = q.get("fieldValidation", "")
        if fv not in ("", "Strict", "Warn", "Ignore"):
            raise ApiError(
                400,
                "BadRequest",
                f"invalid fieldValidation directive: {fv!r}, allowed values are Ignore, Warn, or Strict",
            )
        if self.store.version < (1, 25):
            fv = "Ignore"  # older servers decode leniently and know no fieldValidation
        elif not fv:
            fv = "Warn"
        del method
        return WriteOptions(dry_run=dry == "All", field_validation=fv)

    def _nonresource(self, parts: list[str], q: dict[str, str]) -> JSON | None:
        if parts == ["version"]:
            major, minor = self.version.lstrip("v").split(".")[:2]
            return {
                "major": major,
                "minor": minor,
                "gitVersion": self.version,
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2025-04-22T16:00:00Z",
                "goVersion": "go1.23.8",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return {"status": "ok"}
        if parts == ["api"]:
            return discovery.api_versions(self.url.removeprefix("https://"))
        if parts == ["apis"]:
            return discovery.api_group_list()
        if parts == ["api", "v1"]:
            return discovery.resource_list("", "v1")
        if len(parts) == 2 and parts[0] == "apis":
            return discovery.api_group(parts[1]) or _raise_not_found()
        if len(parts) == 3 and parts[0] == "apis":
            return discovery.resource_list(parts[1], parts[2]) or _raise_not_found()
        if parts[:2] == ["openapi", "v3"]:
            return openapi.document("/".join(parts[2:])) or _raise_not_found()
        if parts[:2] == ["openapi", "v2"]:
            raise ApiError(404, "NotFound", _NOT_FOUND)
        del q
        return None

    def _ssar(self, body: Any, user: rbac.User) -> tuple[int, JSON, dict[str, str]]:
        if not isinstance(body, dict) or body.get("kind") not in (None, "SelfSubjectAccessReview"):
            raise ApiError(400, "BadRequest", "expected a SelfSubjectAccessReview")
        spec = body.get("spec") or {}
        attrs = spec.get("resourceAttributes")
        if not attrs and not spec.get("nonResourceAttributes"):
            raise ApiError(
                422,
                "Invalid",
                'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: '
                '"null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
            )
        doc = copy.deepcopy(body)
        doc.update({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1"})
        doc.setdefault("metadata", {})["creationTimestamp"] = None
        if attrs:
            a = rbac.Attributes(
                str(attrs.get("verb", "")),
                str(attrs.get("group", "")),
                str(attrs.get("resource", "")),
                str(attrs.get("namespace", "")),
                str(attrs.get("name", "")),
                str(attrs.get("subresource", "")),
            )
            allowed, reason = self.can(user, a)
        else:
            allowed, reason = user.superuser, ""
        doc["status"] = {"allowed": allowed}
        if reason:
            doc["status"]["reason"] = reason
        return 201, doc, {}

    # -- controller ----------------------------------------------------------------------------

    def _controller(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self._reconcile()
            except ApiError:
                continue  # a racing write; next tick

    def _settled(self) -> bool:
        with self.store.lock:
            for dep in self.list("deployments"):
                st = dep.get("status") or {}
                want = int(dep["spec"].get("replicas", 1))
                if st.get("observedGeneration") != dep["metadata"].get("generation"):
                    return False
                if st.get("updatedReplicas") != want or st.get("readyReplicas") != want or st.get("replicas") != want:
                    return False
            return all(_pod_ready(p) for p in self.list("pods"))

    def _reconcile(self) -> None:
        store = self.store
        with store.lock:
            now = time.monotonic()
            if store.terminating:
                store.finalize_namespaces(self.namespace_finalize_delay)
            self._reconcile_tokens()
            self._reconcile_root_configmaps(now)
            for dep in self.list("deployments"):
                self._reconcile_deployment(dep)
            for pod in self.list("pods"):
                if _pod_ready(pod):
                    continue
                born = pod["metadata"].get("annotations", {}).get("emulator.airgap.dev/born")
                if born is not None and now - float(born) < self.ready_delay:
                    continue
                pod["status"] = {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_iso()}],
                    "containerStatuses": [
                        {"name": c["name"], "ready": True, "restartCount": 0}
                        for c in pod.get("spec", {}).get("containers", [])
                    ],
                }
                store.update(_rd("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"], pod)

    def _reconcile_tokens(self) -> None:
        """The token controller: fill each service-account-token Secret whose ServiceAccount exists.

        As the real controller does: ``token``, ``ca.crt`` and ``namespace`` in ``data``, and the
        account's uid in the ``kubernetes.io/service-account.uid`` annotation.
        """
        for secret in self.list("secrets"):
            if secret.get("type") != "kubernetes.io/service-account-token" or (secret.get("data") or {}).get("token"):
                continue
            meta = secret["metadata"]
            sa = self.get("serviceaccounts", meta["namespace"], (meta.get("annotations") or {}).get(SA_NAME, ""))
            if sa is None:
                continue
            token = f"emulated-token-{self.name}-{uuid.uuid4().hex}"
            self.tokens[token] = f"system:serviceaccount:{meta['namespace']}:{sa['metadata']['name']}"
            secret["data"] = {
                "token": base64.b64encode(token.encode()).decode(),
                "ca.crt": base64.b64encode(_trust_ca().cert_pem.bytes()).decode(),
                "namespace": base64.b64encode(meta["namespace"].encode()).decode(),
            }
            meta.setdefault("annotations", {})["kubernetes.io/service-account.uid"] = sa["metadata"]["uid"]
            self.store.update(_rd("secrets"), meta["namespace"], meta["name"], secret)

    def _reconcile_root_configmaps(self, now: float) -> None:
        """The istiod stand-in (NOT istiod): while an istiod pod is Ready in istio-system, copy
        ``cacerts``' root-cert.pem into the ``istio-ca-root-cert`` ConfigMap (key root-cert.pem) of
        every namespace labelled ``istio-injection=enabled`` or ``istio.io/rev``, once the same
        root-cert.pem has been there for ``root_publish_delay`` seconds. Nothing else of istiod."""
        if self.root_publish_delay is None:
            return
        if not any(_pod_ready(p) for p in self.list("pods", "istio-system", "app=istiod")):
            return
        secret = self.get("secrets", "istio-system", "cacerts")
        raw = ((secret or {}).get("data") or {}).get("root-cert.pem")
        if not raw:
            return
        pem = base64.b64decode(raw).decode("ascii", "replace")
        if self._root_seen is None or self._root_seen[0] != pem:
            self._root_seen = (pem, now)
        if now - self._root_seen[1] < self.root_publish_delay:
            return
        for ns in self.list("namespaces"):
            labels = ns["metadata"].get("labels") or {}
            if labels.get("istio-injection") != "enabled" and "istio.io/rev" not in labels:
                continue
            name = ns["metadata"]["name"]
            cm = self.get("configmaps", name, "istio-ca-root-cert")
            if cm is None:
                body = {"metadata": {"name": "istio-ca-root-cert", "labels": {"istio.io/config": "true"}}}
                self.store.create(_rd("configmaps"), name, {**body, "data": {"root-cert.pem": pem}})
            elif (cm.get("data") or {}).get("root-cert.pem") != pem:
                cm["data"] = {"root-cert.pem": pem}
                self.store.update(_rd("configmaps"), name, "istio-ca-root-cert", cm)

    def _reconcile_deployment(self, dep: JSON) -> None:
        ns = dep["metadata"]["namespace"]
        name = dep["metadata"]["name"]
        template = dep["spec"]["template"]
        h = _template_hash(template)
        want = int(dep["spec"].get("replicas", 1))
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        pods = [
            p
            for p in self.list("pods", ns, selector)
            if any(o.get("name", "").rsplit("-", 1)[0] == name for o in p["metadata"].get("ownerReferences", []))
        ]
        current = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == h]
        old = [p for p in pods if p not in current]
        # Simplified rollout: start the new pods, and retire old ones once the new ones are Ready.
        for _ in range(want - len(current)):
            current.append(self._create_pod(ns, name, h, template))
        if old and all(_pod_ready(p) for p in current):
            for p in old:
                self.delete("pods", ns, p["metadata"]["name"])
            old = []
        for p in current[want:]:
            self.delete("pods", ns, p["metadata"]["name"])
        current = current[:want]
        ready = sum(1 for p in current if _pod_ready(p))
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": len(current) + len(old),
            "updatedReplicas": len(current),
            "readyReplicas": ready + sum(1 for p in old if _pod_ready(p)),
            "availableReplicas": ready,
        }
        if not old:
            status["replicas"] = len(current)
            status["readyReplicas"] = ready
        if dep.get("status") != status:
            dep["status"] = status
            self.store.update(_rd("deployments"), ns, name, dep)

    def installed_revisions(self) -> set[str]:
        """Revisions with an istiod Deployment in istio-system (what serves their injection webhook)."""
        revs = set()
        for dep in self.list("deployments", "istio-system", "app=istiod"):
            revs.add((dep["metadata"].get("labels") or {}).get(INJECT_LABEL, "default"))
        return revs

    def _create_pod(self, ns: str, deployment: str, h: str, template: JSON) -> JSON:
        meta = copy.deepcopy(template.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        labels["pod-template-hash"] = h
        annotations = dict(meta.get("annotations") or {})
        annotations["emulator.airgap.dev/born"] = repr(time.monotonic())
        spec = copy.deepcopy(template.get("spec") or {})
        # The sidecar injector: a namespace labelled istio.io/rev (and not istio-injection) gets
        # its revision's proxy and label, if a control plane of that revision is installed (its
        # webhook exists only then). With both labels set, injection silently fails.
        nsobj = self.get("namespaces", None, ns) or {}
        nslabels = nsobj.get("metadata", {}).get("labels") or {}
        rev = nslabels.get(INJECT_LABEL)
        if rev and "istio-injection" not in nslabels and ns != "istio-system" and rev in self.installed_revisions():
            labels[INJECT_LABEL] = rev
            annotations["sidecar.istio.io/status"] = json.dumps({"revision": rev, "containers": ["istio-proxy"]})
            # the image of values.global.proxy.image when it has a '/' (Istio takes it verbatim), or the
            # pod's sidecar.istio.io/proxyImage annotation, which Istio's injection template honours
            image = annotations.get("sidecar.istio.io/proxyImage") or self.proxy_images.get(rev, f"proxyv2:{rev}")
            spec.setdefault("containers", []).append({"name": "istio-proxy", "image": image})
        pod = {
            "metadata": {
                "name": f"{deployment}-{h[:8]}-{uuid.uuid4().hex[:5]}",
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{deployment}-{h[:8]}",
                        "uid": str(uuid.uuid4()),
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
        }
        return self.create("pods", ns, pod)


class _Watch(Exception):  # control flow: the handler streams instead of answering
    def __init__(self, rd: ResourceDef, namespace: str | None, query: dict[str, str]) -> None:
        super().__init__("watch")
        self.rd, self.namespace, self.query = rd, namespace, query


def _group_version(group: str) -> str:
    return next((rd.version for rd in RESOURCES.values() if rd.group == group), "")


def _raise_not_found() -> JSON:
    raise ApiError(404, "NotFound", _NOT_FOUND)


def _rd(plural: str) -> ResourceDef:
    for (_g, p), rd in RESOURCES.items():
        if p == plural:
            return rd
    raise KeyError(plural)


def write_kubeconfig(
    path: Path, entries: Sequence[tuple[str, Emulator] | tuple[str, Emulator, str | None]], current: str | None = None
) -> Path:
    """A kubeconfig with one context per entry (the first is current unless ``current``).

    An entry is (context, emulator) for its admin, or (context, emulator, user) for a user made by
    :meth:`Emulator.add_user`.
    """
    clusters, users, contexts = [], [], []
    for entry in entries:
        ctx, emu = entry[0], entry[1]
        user = entry[2] if len(entry) > 2 else None  # type: ignore[misc]
        c, u, x = emu.kubeconfig_entry(ctx, user)
        clusters.append(c)
        users.append(u)
        contexts.append(x)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": current or entries[0][0],
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
