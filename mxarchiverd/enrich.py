"""Add names and WhatsApp ids to archive rows (pure given the lookups)."""
from __future__ import annotations

from typing import Any

from mxarchiverd.sources.bridge_db import BridgedMessage, Portal
from mxarchiverd.sources.room_state import RoomInfo


def room_summary(room_id: str, info: RoomInfo, portal: Portal | None, bridge_type: str) -> dict[str, Any]:
    """What the dbwriter keeps about a room in monitored_rooms."""
    return {
        "room_id": room_id,
        # A bridged DM often has no m.room.name; the portal's name is the chat's name.
        "room_name": info.name or (portal.name if portal else None),
        "room_alias": info.alias,
        "encryption": info.encryption,
        "whatsapp_id": portal.chat_id if portal else None,
        "bridge_type": bridge_type if portal else None,
    }


def enrich_row(row: dict[str, Any], room: dict[str, Any], display_name: str | None,
               bridged: BridgedMessage | None) -> None:
    row["room_name"] = room["room_name"]
    row["sender_display_name"] = display_name or (bridged.sender_name if bridged else None)
    row["whatsapp_chat_id"] = room["whatsapp_id"]
    row["whatsapp_message_id"] = bridged.message_id or None if bridged else None
    row["whatsapp_sender_id"] = bridged.sender_id if bridged else None
    row["sender_phone"] = bridged.sender_phone if bridged else None
