"""Two read-only questions skopeo has no command for: "may I?" and "do you hold this blob?".

``images push`` asks them before anything is pushed: the registry's ``/v2/`` with the auth
file's credentials (so missing or refused credentials stop the push before its first byte), and
``HEAD /v2/REPO/blobs/DIGEST`` for each blob a delta bundle inherits from its base (so a delta
onto a registry without its base is refused, naming the missing blobs). Basic auth and the
token flow of the distribution spec are supported; nothing else of the protocol is spoken here.

Trust: answers are only used to refuse early; a registry that lies "yes" still fails the push
inside skopeo (it cannot complete a manifest whose blobs it lacks).
"""

from __future__ import annotations

import re
from typing import Any

from airgap.connected.skopeo import RegistryAccess
from airgap.core.display import clean
from airgap.errors import InvalidInput, NetworkError

TIMEOUT = 30.0
MAX_TOKEN_ANSWER = 1024 * 1024
_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """A ``requests`` session for one registry host, with the auth file's credentials."""

    def __init__(self, host: str, access: RegistryAccess) -> None:
        import requests

        self.host = host
        self.access = access
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or .netrc credentials: the auth file is the one source
        self.verify: Any = str(access.cert_dir / "ca.crt") if access.cert_dir else True
        self.creds = access.credentials(host)
        self._auth: dict[str, str] = {}

    def _get(self, method: str, url: str, **kw: Any) -> Any:
        """One request, retried (``access.retries`` times, backing off) on a dropped connection or a 5xx."""
        import time

        import requests

        for attempt in range(self.access.retries + 1):
            try:
                reply = self.session.request(method, url, verify=self.verify, timeout=TIMEOUT, **kw)
            except requests.exceptions.SSLError as exc:
                raise NetworkError(f"{self.host}: TLS failed (give the registry's CA with --ca-bundle)") from exc
            except requests.RequestException as exc:
                if attempt == self.access.retries:
                    why = clean(type(exc).__name__)
                    raise NetworkError(
                        f"{self.host}: cannot reach the registry after {attempt + 1} tries: {why}"
                    ) from exc
            else:
                if reply.status_code < 500 or attempt == self.access.retries:
                    return reply
            time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _authorise(self, challenge: str, scope: str | None) -> None:
        if self.creds is None:
            where = (
                self.access.authfile or "no auth file (--authfile, $REGISTRY_AUTH_FILE, ~/.config/containers/auth.json)"
            )
            raise InvalidInput(f"{self.host} asks for credentials and there are none for it in {where}; nothing pushed")
        if challenge.lower().startswith("basic"):
            import requests.auth

            self._auth = {}
            self.session.auth = requests.auth.HTTPBasicAuth(*self.creds)
            return
        params = dict(_PARAM.findall(challenge))
        if not params.get("realm", "").startswith("https://"):
            raise NetworkError(f"{self.host}: its token service is not an https:// URL; credentials not sent")
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        reply = self._get("GET", params.get("realm", ""), params=query, auth=self.creds)
        if reply.status_code != 200:
            raise NetworkError(f"{self.host}: the token service refused the credentials ({reply.status_code})")
        from airgap.core.canonical import load_json

        doc = load_json(reply.content, what=f"{self.host}: the token service's answer", max_bytes=MAX_TOKEN_ANSWER)
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise NetworkError(f"{self.host}: the token service answered no token")
        self._auth = {"Authorization": f"Bearer {token}"}

    def ask(self, method: str, path: str, scope: str | None = None) -> int:
        """``method`` on ``/v2/…``; authorise once on a 401 and ask again; the final status."""
        url = f"https://{self.host}{path}"
        reply = self._get(method, url, headers=self._auth)
        if reply.status_code == 401:
            self._authorise(reply.headers.get("WWW-Authenticate", "Basic"), scope)
            reply = self._get(method, url, headers=self._auth)
            if reply.status_code == 401:
                raise NetworkError(
                    f"{self.host}: the registry refused the credentials from {self.access.authfile} (401)"
                )
        return int(reply.status_code)

    def check_access(self) -> None:
        status = self.ask("GET", "/v2/")
        if status != 200:
            raise NetworkError(f"{self.host}: the registry answered {status} to /v2/ (after retries); nothing pushed")

    def has_blob(self, repo: str, digest: str) -> bool:
        status = self.ask("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        if status in (200, 307):
            return True
        if status == 404:
            return False
        raise NetworkError(f"{self.host}: HEAD of blob {digest} in {repo} answered {status}")
