"""A Kubernetes API emulator on loopback over HTTPS with bearer-token auth.

:class:`Emulator` serves the REST paths airgap uses (see :mod:`tests.kubeapi.store` for the
semantics), injects faults on request (:class:`Faults`), runs a small controller that marks pods
Ready, rolls deployments out and applies the sidecar injector's ``istio.io/rev`` label, and
writes a kubeconfig the official client and kubectl can use.

It is a test double, not a cluster: no watch, no scheduling, no real admission webhooks.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.kubeapi.store import JSON, RESOURCES, ApiError, ResourceDef, Store, now_iso

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
INJECT_LABEL = "istio.io/rev"
SA_NAME = "kubernetes.io/service-account.name"

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

    def fail(self, count: int, status: int = 503, *, method: str | None = None, path: str | None = None) -> None:
        """The next ``count`` matching requests answer ``status`` with a Status body."""
        with self._lock:
            self._faults.append(Fault("status", count, method, path, status=status))

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

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def _serve(self, method: str) -> None:
        emu = self.server.emulator
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
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
            reason = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
            err = ApiError(fault.status, reason, "injected fault: the server is currently unable to handle the request")
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            emu.record(Request(method, path, fault.status, ctype))
            self._send(fault.status, err.status(), headers)
            return
        auth = self.headers.get("Authorization") or ""
        reader = emu.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if reader is not None and method != "GET":  # a service-account token: the reader role reads only
            emu.record(Request(method, path, 403, ctype))
            self._send(403, ApiError(403, "Forbidden", f'User "{reader}" cannot {method.lower()} {path}').status())
            return
        if auth != f"Bearer {emu.token}" and reader is None:
            emu.record(Request(method, path, 401, ctype))
            self._send(401, ApiError(401, "Unauthorized", "Unauthorized").status())
            return
        if hook is not None:
            hook()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            err = ApiError(400, "BadRequest", "the body of the request was in an unknown format")
            emu.record(Request(method, path, 400, ctype))
            self._send(400, err.status())
            return
        try:
            code, doc = emu.handle(method, path, parse_qs(url.query), ctype, body)
        except ApiError as exc:
            code, doc = exc.code, exc.status()
        emu.record(Request(method, path, code, ctype))
        if fault is not None and fault.kind == "drop_after":
            self._drop()
            return
        self._send(code, doc)

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
        version: str = "v1.19.16",
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
        self.store = Store()
        self.faults = Faults()
        self.tokens: dict[str, str] = {}  # service-account tokens the token controller issued -> user
        self.denied: set[tuple[str, str]] = set()  # (verb, resource) refused by SelfSubjectAccessReview
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

    def kubeconfig_entry(self, context: str | None = None) -> tuple[JSON, JSON, JSON]:
        """(cluster, user, context) entries for a kubeconfig."""
        ctx = context or self.name
        ca_pem = _trust_ca().cert_pem.bytes()
        return (
            {
                "name": ctx,
                "cluster": {"server": self.url, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            },
            {"name": ctx, "user": {"token": self.token}},
            {"name": ctx, "context": {"cluster": ctx, "user": ctx}},
        )

    def write_kubeconfig(self, path: Path, context: str | None = None) -> Path:
        return write_kubeconfig(path, [(context or self.name, self)])

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
        return self.store.delete(_rd(plural), namespace, name)

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

    def simulate_istio_install(self, revision: str, *, ingress: bool = True, replicas: int = 1) -> None:
        """What ``istioctl install`` leaves behind that airgap waits for: istiod and the ingress gateway."""
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

    def handle(self, method: str, path: str, query: dict[str, list[str]], ctype: str, body: Any) -> tuple[int, JSON]:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts == ["version"] and method == "GET":
            major, minor = self.version.lstrip("v").split(".")[:2]
            return 200, {"major": major, "minor": minor, "gitVersion": self.version, "platform": "linux/amd64"}
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return 200, {"status": "ok"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if parts[:1] == ["api"] and len(parts) >= 2 and parts[1] == "v1":
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
            if group == "authorization.k8s.io" and rest == ["selfsubjectaccessreviews"] and method == "POST":
                return self._ssar(body)
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rd = RESOURCES.get((group, rest[0]))
        if rd is None or (namespace is not None and not rd.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) == 2 else None
        q = {k: v[0] for k, v in query.items()}
        store = self.store
        if name is None:
            if method == "GET":
                return 200, store.list(rd, namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
            if method == "POST":
                if rd.namespaced and namespace is None:
                    raise ApiError(
                        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                    )
                if q.get("dryRun") == "All":
                    return 201, body
                return 201, store.create(rd, namespace, body)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if rd.namespaced and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            return 200, store.get(rd, namespace, name)
        if method == "PUT":
            return 200, store.update(rd, namespace, name, body)
        if method == "PATCH":
            return 200, store.patch(rd, namespace, name, ctype, body)
        if method == "DELETE":
            return 200, store.delete(rd, namespace, name, body)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _ssar(self, body: Any) -> tuple[int, JSON]:
        if not isinstance(body, dict) or body.get("kind") not in (None, "SelfSubjectAccessReview"):
            raise ApiError(400, "BadRequest", "expected a SelfSubjectAccessReview")
        attrs = ((body.get("spec") or {}).get("resourceAttributes")) or {}
        verb, resource = attrs.get("verb", ""), attrs.get("resource", "")
        allowed = (verb, resource) not in self.denied and ("*", resource) not in self.denied
        doc = copy.deepcopy(body)
        doc.update({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1"})
        doc["status"] = {"allowed": allowed}
        if not allowed:
            doc["status"]["reason"] = "denied by the emulator's RBAC setting"
        return 201, doc

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
            self._reconcile_tokens()
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

    def _create_pod(self, ns: str, deployment: str, h: str, template: JSON) -> JSON:
        meta = copy.deepcopy(template.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        labels["pod-template-hash"] = h
        annotations = dict(meta.get("annotations") or {})
        annotations["emulator.airgap.dev/born"] = repr(time.monotonic())
        spec = copy.deepcopy(template.get("spec") or {})
        # The sidecar injector: a namespace labelled istio.io/rev (and not istio-injection) gets
        # its revision's proxy and label. With both labels set, injection silently fails.
        nsobj = self.get("namespaces", None, ns) or {}
        nslabels = nsobj.get("metadata", {}).get("labels") or {}
        rev = nslabels.get(INJECT_LABEL)
        if rev and "istio-injection" not in nslabels and ns != "istio-system":
            labels[INJECT_LABEL] = rev
            annotations["sidecar.istio.io/status"] = json.dumps({"revision": rev, "containers": ["istio-proxy"]})
            spec.setdefault("containers", []).append({"name": "istio-proxy", "image": f"proxyv2:{rev}"})
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


def _rd(plural: str) -> ResourceDef:
    for (_g, p), rd in RESOURCES.items():
        if p == plural:
            return rd
    raise KeyError(plural)


def write_kubeconfig(path: Path, entries: list[tuple[str, Emulator]], current: str | None = None) -> Path:
    """A kubeconfig with one context per emulator (the first is current unless ``current``)."""
    clusters, users, contexts = [], [], []
    for ctx, emu in entries:
        c, u, x = emu.kubeconfig_entry(ctx)
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
