"""Raw API calls for tests that assert status codes: the official client's transport, any cluster.

:class:`Raw` goes through ``kubernetes.client.ApiClient`` built from the kubeconfig, so the same
test talks to the emulator or to a real cluster (``AIRGAP_TEST_KUBECONFIG``) with whatever
credentials the kubeconfig holds, and sees every answer (no retries, no exceptions on 4xx/5xx).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.connected.kube import Kube, connect
from tests.connected.kubehelpers import FAST


@dataclass
class Resp:
    status: int
    doc: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return str(self.doc.get("reason", ""))

    @property
    def message(self) -> str:
        return str(self.doc.get("message", ""))

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.doc.get("details") or {}).get("causes") or [])

    @property
    def fields(self) -> list[str]:
        return [str(c.get("field")) for c in self.causes]


class Raw:
    def __init__(self, kubeconfig: Path, context: str) -> None:
        self.kube: Kube = connect(context, kubeconfig=kubeconfig, policy=FAST)

    def close(self) -> None:
        self.kube.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        raw_body: bytes | None = None,
    ) -> Resp:
        api = self.kube.api
        m, url, hdrs, data, _ = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query or []),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        if raw_body is not None:
            data = raw_body
        resp = api.call_api(m, url, header_params=hdrs, body=data, _request_timeout=(5, 30))
        raw = resp.read()
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {"raw": raw.decode(errors="replace")}
        headers = {k: v for k, v in (resp.getheaders() or {}).items()}
        return Resp(int(resp.status), doc if isinstance(doc, dict) else {"value": doc}, headers)

    # conveniences -----------------------------------------------------------------------------

    def scratch_namespace(self, prefix: str = "airgap-t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        r = self.call(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        assert r.status == 201, r.doc
        return name

    def version(self) -> tuple[int, int]:
        doc = self.call("GET", "/version").doc
        return int(doc["major"]), int("".join(ch for ch in str(doc["minor"]) if ch.isdigit()))
