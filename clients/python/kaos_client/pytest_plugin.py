"""The `kaos_client` pytest fixture: a `Kaos` for `--kaos-admin-url` (or `$KAOS_ADMIN_URL`, with
`$KAOS_ADMIN_TOKEN`) that removes the rules the test created when it ends."""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Tuple

import pytest

from . import Kaos, KaosError


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--kaos-admin-url", default=None, help="kaos admin API for the kaos_client fixture")


class _Tracking(Kaos):
    """Remembers the rules it created, to remove them after the test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created: List[Tuple[str, str, str, str, str]] = []

    def add_rule(self, feature: str, api_keys: str = "PRODUCE", direction: str = "REQUEST", **kwargs: Any):
        rule = super().add_rule(feature, api_keys, direction, **kwargs)
        self.created.append((feature, api_keys, direction, rule["tenant"], rule["user"]))
        return rule

    def remove_created(self) -> None:
        for feature, api_keys, direction, tenant, user in reversed(self.created):
            try:
                self.delete_rule(feature, api_keys, direction, tenant=tenant, user=user)
            except KaosError as error:
                if error.status != 404:
                    raise
        self.created.clear()


@pytest.fixture
def kaos_client(request: Any) -> Iterator[Kaos]:
    url = request.config.getoption("--kaos-admin-url") or os.environ.get("KAOS_ADMIN_URL")
    if not url:
        pytest.fail("kaos_client needs --kaos-admin-url or $KAOS_ADMIN_URL", pytrace=False)
    client = _Tracking(url, os.environ.get("KAOS_ADMIN_TOKEN"))
    try:
        yield client
    finally:
        client.remove_created()
