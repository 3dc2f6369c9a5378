"""A client for kaos's admin API, for test suites: faults as context managers, the event log, and
(through `kaos_client.pytest_plugin`) a pytest fixture. Standard library only."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

__all__ = ["Kaos", "KaosError"]

Rule = Dict[str, Any]
Event = Dict[str, Any]


class KaosError(Exception):
    """kaos refused a call: its HTTP status, and for a bad body the field at fault."""

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(f"{status}: {field + ': ' if field else ''}{message}")
        self.status = status
        self.message = message
        self.field = field


def _camel(name: str) -> str:
    """`rate_in_percent` -> `rateInPercent`; camelCase names pass unchanged."""
    return re.sub(r"_([a-z0-9])", lambda match: match.group(1).upper(), name)


class Kaos:
    """One kaos admin API, at `admin_url` (`http://host:port`), with its bearer `token` if it has one.
    Rules go to `tenant` and `user` unless a call names others; user `*` matches every client."""

    def __init__(self, admin_url: str, token: Optional[str] = None, *, tenant: str = "1-1", user: str = "*",
                 timeout: float = 5.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.token = token
        self.tenant = tenant
        self.user = user
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API call; its JSON answer. Raises KaosError for any status but 200."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.admin_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                answer = json.loads(error.read())
            except ValueError:
                answer = {}
            raise KaosError(error.code, answer.get("error", error.reason), answer.get("field")) from None

    def add_rule(self, feature: str, api_keys: str = "PRODUCE", direction: str = "REQUEST", *,
                 tenant: Optional[str] = None, user: Optional[str] = None, **config: Any) -> Rule:
        """Creates (or replaces) a rule; returns it as kaos stored it."""
        path = self._feature_path(feature, tenant, user)
        body = {"config": {_camel(key): value for key, value in config.items()}, "direction": direction,
                "apiKeys": api_keys}
        return self.call("POST", path, body)

    def delete_rule(self, feature: str, api_keys: str = "PRODUCE", direction: str = "REQUEST", *,
                    tenant: Optional[str] = None, user: Optional[str] = None) -> Rule:
        path = f"{self._feature_path(feature, tenant, user)}/apiKeys/{api_keys}/direction/{direction}"
        return self.call("DELETE", path)

    @contextmanager
    def fault(self, feature: str, api_keys: str = "PRODUCE", direction: str = "REQUEST", *,
              tenant: Optional[str] = None, user: Optional[str] = None, **config: Any) -> Iterator[Rule]:
        """A rule for the length of a `with` block: removed when it ends, even on error."""
        rule = self.add_rule(feature, api_keys, direction, tenant=tenant, user=user, **config)
        try:
            yield rule
        finally:
            try:
                self.delete_rule(feature, api_keys, direction, tenant=tenant, user=user)
            except KaosError as error:
                if error.status != 404:  # gone already: its ttl ended, or someone reset
                    raise

    def rules(self) -> List[Rule]:
        return self.call("GET", "/rules")

    def replace_rules(self, rules: List[Rule]) -> List[Rule]:
        """PUT /rules: the whole set, applied whole or not at all."""
        return self.call("PUT", "/rules", rules)

    def reset(self) -> None:
        """Removes every rule (DELETE /rules)."""
        self.call("DELETE", "/rules")

    def events(self, since: int = 0, limit: int = 100) -> List[Event]:
        """The injected faults after sequence number `since` (0: the most recent), oldest first."""
        return self.call("GET", f"/events?since={since}&limit={limit}")

    def _feature_path(self, feature: str, tenant: Optional[str], user: Optional[str]) -> str:
        quote = lambda part: urllib.parse.quote(part, safe="")  # noqa: E731
        return f"/tenant/{quote(tenant or self.tenant)}/user/{quote(user or self.user)}/feature/{quote(feature)}"
