"""Cross-signing bootstrap for the bot (nio has none): run at every start, uploads only once.

Element senders share room keys only with devices their owner cross-signed
(bot-mode-facts §3.5), so the bot publishes master, self-signing and
user-signing keys, signs its device with the self-signing key, and signs the
master key with the device key as clients do. The private keys are sealed to
disk *before* the upload, so a crash in between leaves keys the next start
uploads, never keys the server has and the bot lost. What to do is decided by
:func:`mxarchiverd.e2ee.cross_signing_plan.plan_bootstrap`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mxarchiverd.e2ee.canonical_json import canonical_json
from mxarchiverd.e2ee.cross_signing_keys import CrossSigningKeys, key_object, load_keys, save_keys
from mxarchiverd.e2ee.cross_signing_plan import (
    BootstrapPlan, CrossSigningConflict, LocalIdentity, plan_bootstrap, server_identity,
)
from mxarchiverd.e2ee.matrix_http import CLIENT_V3, MatrixRequestError, request_json, send_json
from mxarchiverd.e2ee.signing import UNSIGNED_PARTS, sign_json
from mxarchiverd.e2ee.store import CryptoSettings

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
SIGNING_UPLOAD = f"{CLIENT_V3}/keys/device_signing/upload"
SIGNATURES_UPLOAD = f"{CLIENT_V3}/keys/signatures/upload"


class CrossSigningError(RuntimeError):
    """The bootstrap could not finish; the message says which step and why."""


@dataclass(frozen=True)
class BootstrapResult:
    master_key: str
    self_signing_key: str
    plan: BootstrapPlan


async def bootstrap_cross_signing(client: AsyncClient, settings: CryptoSettings) -> BootstrapResult:
    """Make sure the server shows our cross-signing keys and our device signed by them.

    Raises :class:`CrossSigningConflict` when the server's identity is not ours
    (nothing is uploaded then) and :class:`CrossSigningError` when a step fails.
    """
    olm = client.olm
    if olm is None:
        raise CrossSigningError("cross-signing: the client has no crypto store loaded")
    if not olm.account.shared:
        await _upload_device_keys(client)
    keys = load_keys(settings.cross_signing_path, settings.pickle_key, client.user_id)
    server = server_identity(await query_own_keys(client), client.user_id, client.device_id)
    local = LocalIdentity(client.user_id, client.device_id, olm.account.identity_keys["ed25519"],
                          keys.master_public if keys else None,
                          keys.self_signing_public if keys else None)
    plan = plan_bootstrap(local, server, settings.reset_identity)
    if plan.generate:
        keys = CrossSigningKeys.generate(client.user_id)
        save_keys(settings.cross_signing_path, keys, settings.pickle_key)
    assert keys is not None
    await _carry_out(client, settings, plan, keys, server.device_key or {})
    return BootstrapResult(keys.master_public, keys.self_signing_public, plan)


async def _carry_out(client: AsyncClient, settings: CryptoSettings, plan: BootstrapPlan,
                     keys: CrossSigningKeys, device_key: JsonDict) -> None:
    if plan.upload_keys:
        await upload_signing_keys(client, keys, settings.password)
        log.info("cross-signing: published master key %s", keys.master_public)
    signatures: JsonDict = {}
    if plan.sign_device:
        signatures[client.device_id] = device_signed_by(keys, device_key)
    if plan.sign_master:
        signatures[keys.master_public] = master_signed_by_device(client, keys)
    if signatures:
        await upload_signatures(client, {client.user_id: signatures})
        log.info("cross-signing: uploaded %d signature(s) for device %s", len(signatures),
                 client.device_id)


async def _upload_device_keys(client: AsyncClient) -> None:
    from nio import KeysUploadError

    response = await client.keys_upload()
    if isinstance(response, KeysUploadError):
        raise CrossSigningError(f"cross-signing: device key upload failed: {response.message}")


async def query_own_keys(client: AsyncClient) -> JsonDict:
    """``/keys/query`` for the bot's own user, raw (nio's parser drops cross-signing keys)."""
    return await request_json(client, "POST", f"{CLIENT_V3}/keys/query",
                              {"device_keys": {client.user_id: []}})


def device_signed_by(keys: CrossSigningKeys, device_key: JsonDict) -> JsonDict:
    """The device key as the server stores it, with only the self-signing key's signature."""
    bare = {k: v for k, v in device_key.items() if k not in UNSIGNED_PARTS}
    return sign_json(bare, keys.user_id, f"ed25519:{keys.self_signing_public}", keys.self_signing)


def master_signed_by_device(client: AsyncClient, keys: CrossSigningKeys) -> JsonDict:
    """Our master key signed by the device's Ed25519 key (held by the Olm account)."""
    assert client.olm is not None
    master = key_object(keys.user_id, "master", keys.master_public)
    signature = client.olm.account.sign(canonical_json(master).decode("utf-8"))
    master["signatures"] = {keys.user_id: {f"ed25519:{client.device_id}": signature}}
    return master


async def upload_signing_keys(client: AsyncClient, keys: CrossSigningKeys,
                              password: str | None) -> None:
    """``POST /keys/device_signing/upload``; answers a UIA challenge with the password if given."""
    body = keys.upload_body()
    status, answer = await send_json(client, "POST", SIGNING_UPLOAD, body)
    if status == 401 and "flows" in answer:
        auth = _password_auth(client, answer, password)
        status, answer = await send_json(client, "POST", SIGNING_UPLOAD, {**body, "auth": auth})
    if not 200 <= status < 300:
        raise CrossSigningError(f"cross-signing: key upload refused: "
                                f"{MatrixRequestError('POST', SIGNING_UPLOAD, status, answer)}")


def _password_auth(client: AsyncClient, challenge: JsonDict, password: str | None) -> JsonDict:
    flows = [flow.get("stages", []) for flow in challenge.get("flows", [])]
    if ["m.login.password"] not in flows:
        raise CrossSigningError(f"cross-signing: the server wants interactive auth with stages "
                                f"{flows}; only a password flow can be done unattended"
                                f"{_oauth_hint(challenge)}")
    if not password:
        raise CrossSigningError("cross-signing: the server wants the account password to accept "
                                "the keys (interactive auth); configure the bot's password")
    return {"type": "m.login.password", "session": challenge.get("session"), "password": password,
            "identifier": {"type": "m.id.user", "user": client.user_id}}


def _oauth_hint(challenge: JsonDict) -> str:
    url = (challenge.get("params", {}).get("m.oauth") or {}).get("url")
    return f" (approve the reset at {url}, then restart)" if url else ""


async def upload_signatures(client: AsyncClient, signed: JsonDict) -> None:
    """``POST /keys/signatures/upload``; a 200 can still carry per-key failures."""
    answer = await request_json(client, "POST", SIGNATURES_UPLOAD, signed)
    failures = answer.get("failures") or {}
    if failures:
        raise CrossSigningError(f"cross-signing: the server refused signatures: {failures}")


__all__ = ["BootstrapResult", "CrossSigningConflict", "CrossSigningError",
           "bootstrap_cross_signing", "query_own_keys"]
