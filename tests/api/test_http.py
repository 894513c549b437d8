"""Client-address and localhost rules of PROTOCOL §1.0."""

from __future__ import annotations

import ipaddress

from api.http import client_ip, is_localhost


def scope(peer: str, **headers: str) -> dict:
    return {"client": (peer, 5000),
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


def test_client_ip__forwarded_only_from_trusted_peers() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_ip(scope("203.0.113.9", x_forwarded_for="127.0.0.1"), proxies) == "203.0.113.9"
    assert client_ip(scope("10.1.2.3", x_forwarded_for="198.51.100.7, 10.1.2.3"), proxies) == \
        "198.51.100.7"
    assert client_ip(scope("127.0.0.1", x_real_ip="198.51.100.8"), []) == "198.51.100.8"
    # A forwarded value that claims to be local is ignored: the peer stays the answer.
    assert client_ip(scope("10.1.2.3", x_forwarded_for="127.0.0.1"), proxies) == "10.1.2.3"


def test_is_localhost__exact_addresses_only() -> None:
    assert all(is_localhost(v) for v in ("127.0.0.1", "::1", "localhost", "127.0.0.1:80",
                                         "[::1]:80"))
    assert not any(is_localhost(v) for v in ("127.0.0.2", "::ffff:127.0.0.1", "10.0.0.1"))
