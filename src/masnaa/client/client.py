"""``MasnaaClient``: one method per API call, JSON in, plain dicts out.

Every non-2xx answer raises ``MasnaaError(code, message, status, field)``
carrying the API's error body; a server that cannot be reached raises
``MasnaaError("unreachable", ...)`` with status 0 (a submission with an
idempotency key is sent again on that error: see ``submit``). The methods return the
API's JSON (documented by ``/api/v1/openapi.json``) as dicts, so the client
never lags the server's fields.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from masnaa.client.config import read_credentials


class MasnaaError(Exception):
    def __init__(self, code: str, message: str, status: int, field: str | None = None) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.status = status
        self.field = field


Json = Any
SUBMIT_BACKOFF = (0.5, 1.0, 2.0, 4.0)
"""Seconds before each retry of a keyed submission whose answer was lost."""


class MasnaaClient:
    def __init__(
        self, base_url: str, token: str, *, timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "masnaa-client"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_config(cls) -> MasnaaClient:
        creds = read_credentials()
        return cls(creds.url, creds.token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MasnaaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Json:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise MasnaaError(
                "unreachable",
                f"cannot reach the Masnaa API at {self.base_url}: {exc} "
                "(is `masnaa up` running?)",
                0,
            ) from exc
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise MasnaaError(
                    err["code"], err["message"], response.status_code, err.get("field")
                )
            except (ValueError, KeyError, TypeError):
                raise MasnaaError(
                    f"http-{response.status_code}",
                    response.text[:500] or response.reason_phrase,
                    response.status_code,
                ) from None
        return response.json()

    @staticmethod
    def _params(**kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in kwargs.items() if v is not None}

    # --- jobs -------------------------------------------------------------------

    def submit(self, *, idempotency_key: str | None = None, **spec: Any) -> Json:
        """Submit one job; ``spec`` holds the fields of ``JobSpec``.

        With ``idempotency_key``, a request whose answer was lost (the connection
        failed) is sent again with the same key, up to ``SUBMIT_RETRIES`` times: the
        server makes the job once and answers a retry with it."""
        if idempotency_key is None:
            return self._call("POST", "/jobs", json=spec)
        headers = {"Idempotency-Key": idempotency_key}
        for wait in (*SUBMIT_BACKOFF, None):
            try:
                return self._call("POST", "/jobs", json=spec, headers=headers)
            except MasnaaError as exc:
                if exc.code != "unreachable" or wait is None:
                    raise
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def submit_batch(self, specs: list[dict[str, Any]]) -> Json:
        return self._call("POST", "/jobs/batch", json={"jobs": specs})["jobs"]

    def jobs(
        self, *, state: list[str] | None = None, project: str | None = None,
        tenant: str | None = None, user: str | None = None, limit: int = 100,
        before: str | None = None,
    ) -> Json:
        params = self._params(
            state=state, project=project, tenant=tenant, user=user, limit=limit, before=before
        )
        return self._call("GET", "/jobs", params=params)

    def job(self, job_id: str) -> Json:
        return self._call("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> Json:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def explain(self, job_id: str) -> Json:
        return self._call("GET", f"/jobs/{job_id}/explain")

    def logs(
        self,
        job_id: str,
        *,
        stream: str = "stdout",
        offset: int = 0,
        limit: int = 65536,
        run: int | None = None,
    ) -> Json:
        params: dict[str, object] = {"stream": stream, "offset": offset, "limit": limit}
        if run:
            params["run"] = run
        return self._call("GET", f"/jobs/{job_id}/logs", params=params)

    def queue(self, *, limit: int = 500) -> Json:
        return self._call("GET", "/queue", params={"limit": limit})

    def usage(self, *, since: float | None = None) -> Json:
        return self._call("GET", "/usage", params=self._params(since=since))["projects"]

    # --- tenancy ----------------------------------------------------------------

    def whoami(self) -> Json:
        return self._call("GET", "/whoami")

    def tenants(self) -> Json:
        return self._call("GET", "/tenants")

    def create_tenant(self, name: str, **fields: Any) -> Json:
        return self._call("POST", "/tenants", json={"name": name, **fields})

    def projects(self, *, tenant: str | None = None) -> Json:
        return self._call("GET", "/projects", params=self._params(tenant=tenant))

    def create_project(self, name: str, *, tenant: str | None = None) -> Json:
        return self._call("POST", "/projects", json=self._params(name=name, tenant=tenant))

    def users(self, *, tenant: str | None = None) -> Json:
        return self._call("GET", "/users", params=self._params(tenant=tenant))

    def create_user(
        self, name: str, *, role: str = "member", tenant: str | None = None,
        email: str | None = None,
    ) -> Json:
        return self._call(
            "POST", "/users", json=self._params(name=name, role=role, tenant=tenant, email=email)
        )

    def tokens(self, *, user: str | None = None) -> Json:
        return self._call("GET", "/tokens", params=self._params(user=user))

    def issue_token(
        self, *, user: str | None = None, ttl_seconds: float | None = None, label: str = ""
    ) -> Json:
        return self._call(
            "POST", "/tokens",
            json=self._params(user=user, ttl_seconds=ttl_seconds, label=label or None),
        )

    def revoke_token(self, token_id: int) -> Json:
        return self._call("POST", f"/tokens/{token_id}/revoke")

    # --- factory ----------------------------------------------------------------

    def sites(self) -> Json:
        return self._call("GET", "/sites")

    def nodes(self, *, site: str | None = None) -> Json:
        return self._call("GET", "/nodes", params=self._params(site=site))

    def drain(self, node: str, reason: str = "", *, evacuate: bool = True) -> Json:
        return self._call(
            "POST", f"/nodes/{node}/drain", json={"reason": reason, "evacuate": evacuate}
        )

    def undrain(self, node: str, reason: str = "") -> Json:
        return self._call("POST", f"/nodes/{node}/undrain", json={"reason": reason})

    def quotas(self, *, tenant: str | None = None) -> Json:
        return self._call("GET", "/quotas", params=self._params(tenant=tenant))

    def set_quota(self, **quota: Any) -> Json:
        return self._call("PUT", "/quotas", json=quota)

    def priority_classes(self) -> Json:
        return self._call("GET", "/priority-classes")
