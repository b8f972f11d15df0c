"""What a hand-written sync loop owes the crypto layer, in the order nio's sync_forever does it.

After every ``/sync``: send queued to-device messages (room keys we share, Olm
dummies), upload one-time keys when the server runs low, query changed device
lists, claim one-time keys for missing Olm sessions (bot-mode-facts §2.3).
Without this no sender can ever share a Megolm key with the bot.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mxarchiverd.e2ee.ciphertext import SessionRef
from mxarchiverd.e2ee.megolm import KeyNews, held, key_news
from mxarchiverd.e2ee.pending import PendingIndex

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__name__)


async def run_housekeeping(client: AsyncClient) -> None:
    """One round of key traffic; failures are logged (the next round retries), never raised."""
    from nio import ErrorResponse

    responses = [await client.send_to_device_messages()]
    if client.should_upload_keys:
        responses.append(await client.keys_upload())
    if client.should_query_keys:
        responses.append(await client.keys_query())
    if client.should_claim_keys:
        responses.append(await client.keys_claim(client.get_users_for_key_claiming()))
    for response in _flat(responses):
        if isinstance(response, ErrorResponse):
            log.warning("e2ee housekeeping: %s failed: %s", type(response).__name__,
                        response.message)


def _flat(responses: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for response in responses:
        flat.extend(response if isinstance(response, list) else [response])
    return flat


async def after_sync(client: AsyncClient, sync_response: Any) -> KeyNews:
    """Housekeeping, then what this sync's to-device events changed (keys in, refusals)."""
    await run_housekeeping(client)
    return key_news(client, sync_response.to_device_events)


def retry_at_start(client: AsyncClient, pending: PendingIndex) -> list[tuple[SessionRef, list[str]]]:
    """Pending events whose key the store already holds (a key stored just before a crash)."""
    return pending.waiting_for(held(client, pending.sessions()))
