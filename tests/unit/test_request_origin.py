"""The Host allowlist and the cross-site rule of api/security.py, as pure functions."""

from __future__ import annotations

import pytest

from pensieve.api.security import cross_site, host_allowed, host_name


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "::1"), ("LocalHost", "localhost"), ("box.lan.:80", "box.lan")],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    "header", ["127.0.0.1:8000", "localhost:8000", "app.localhost", "[::1]:8000", "10.0.0.7:8000", "[fe80::1]"]
)
def test_ip_literals_and_localhost_are_always_allowed(header: str) -> None:
    assert host_allowed(header, [])


@pytest.mark.parametrize("header", ["attacker.example", "attacker.example:8000", "localhost.attacker.example"])
def test_other_names_need_the_allowlist(header: str) -> None:
    assert not host_allowed(header, [])


def test_a_request_without_host_is_no_browser_and_passes() -> None:
    assert host_allowed("", [])


def test_allowlist_names_domains_and_star() -> None:
    assert host_allowed("pensieve.lan:8000", ["pensieve.lan"])
    assert host_allowed("a.b.example.com", [".example.com"]) and host_allowed("example.com", [".example.com"])
    assert not host_allowed("badexample.com", [".example.com"])
    assert host_allowed("anything.example", ["*"])


def _cross(origin: str | None = None, site: str | None = None, cors: tuple[str, ...] = ()) -> bool:
    return cross_site(origin=origin, fetch_site=site, host_header="127.0.0.1:8000", scheme="http", cors_origins=cors)


def test_cross_site_rule() -> None:
    assert not _cross()  # SDKs and curl send neither header
    assert not _cross(origin="http://127.0.0.1:8000", site="same-origin")
    assert _cross(origin="http://attacker.example")
    assert _cross(origin="http://127.0.0.1:8001")  # another port is another origin
    assert _cross(origin="null")
    assert _cross(site="cross-site") and _cross(site="same-site")
    assert not _cross(site="none")  # typed in the address bar
    assert not _cross(origin="http://localhost:8501", cors=("http://localhost:8501",))
    assert not _cross(origin="http://anything.example", cors=("*",))
    assert _cross(origin="http://127.0.0.1:99999")  # unparsable port
