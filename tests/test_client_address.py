"""Which address a request came from behind trusted proxies: the nearest untrusted
X-Forwarded-For hop, in the forms proxies write it (cloud load balancers add the port)."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from lollms_server.security.local import client_address, parse_networks

PROXIES = parse_networks(["127.0.0.1/32", "10.0.0.0/8"])


def came_from(peer: str, *forwarded: str) -> str:
    headers = CIMultiDict(("X-Forwarded-For", line) for line in forwarded)
    transport = mock.Mock()
    transport.get_extra_info.return_value = (peer, 40000)
    request = make_mocked_request("GET", "/", headers=headers, transport=transport)
    return client_address(request, PROXIES)


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (("203.0.113.9",), "203.0.113.9"),
        (("203.0.113.9:5678",), "203.0.113.9"),  # an AWS/GCP style hop with its port
        (("[2001:db8::7]:443",), "2001:db8::7"),
        (("2001:db8::7",), "2001:db8::7"),
        (("198.51.100.1, 203.0.113.9:5678, 10.1.2.3",), "203.0.113.9"),
        (("198.51.100.1", "203.0.113.9"), "203.0.113.9"),  # HAProxy's own line comes last
        (("not-an-address, 203.0.113.9",), "203.0.113.9"),
        (("203.0.113.9, not-an-address",), "127.0.0.1"),  # nothing past a bad hop is trusted
    ],
)
def test_the_nearest_untrusted_hop_is_the_client(forwarded: tuple[str, ...], client: str) -> None:
    assert came_from("127.0.0.1", *forwarded) == client


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert came_from("192.0.2.5", "203.0.113.9") == "192.0.2.5"
