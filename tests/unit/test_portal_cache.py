"""When the enricher asks the bridge database again whether a room is a portal."""
from __future__ import annotations

from mxarchiverd.sources.bridge_db import MISS_TTL, Portal, PortalLookup, needs_lookup

PORTAL = Portal("!room:example.org", "120363@g.us", "", "Familie", "")


def test_unknown_rooms_are_looked_up() -> None:
    assert needs_lookup(None, 0.0, has_messages=False)


def test_a_portal_stays_a_portal() -> None:
    assert not needs_lookup(PortalLookup(PORTAL, 0.0), 10 * MISS_TTL, has_messages=True)


def test_a_miss_is_kept_for_a_while_only() -> None:
    miss = PortalLookup(None, 100.0)
    assert not needs_lookup(miss, 100.0 + MISS_TTL - 1, has_messages=False)
    assert needs_lookup(miss, 100.0 + MISS_TTL, has_messages=False)


def test_a_miss_is_never_trusted_for_a_room_with_messages() -> None:
    # The bridge saves portal.mxid right after createRoom, before it sends any message.
    assert needs_lookup(PortalLookup(None, 100.0), 100.0, has_messages=True)
