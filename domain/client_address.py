"""Who a request comes from, as the login limits count it.

Caddy passes the address it saw (its peer). Behind Fly's proxy every peer is the proxy, and the client's address is
in the `Fly-Client-IP` header the proxy sets; that header is believed only when the peer is one of the configured
trusted proxies (`MECODES_TRUSTED_PROXY`), since anyone on the open internet can send it. IPv6 clients count by
their /64, the block one subscriber gets: counting single addresses would give a guesser 2^64 fresh tries.
"""

from __future__ import annotations

import contextlib
import ipaddress

from domain.config import Network

IPV6_CLIENT_PREFIX = 64


def client_address(peer: str, fly_client_ip: str | None, trusted_proxies: tuple[Network, ...]) -> str:
    """The client to count: `Fly-Client-IP` when the peer is a trusted proxy and the header ends with an address,
    else the peer itself (or the peer's text as given, should it not be an address)."""
    try:
        address = ipaddress.ip_address(peer.strip())
    except ValueError:
        return peer.strip() or "unknown"
    if fly_client_ip and any(address in network for network in trusted_proxies):
        # The last address, should a client's own have been kept before the proxy's; a header that holds no address
        # counts as the proxy itself, rather than as text anyone could vary.
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(fly_client_ip.rsplit(",", 1)[-1].strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)
