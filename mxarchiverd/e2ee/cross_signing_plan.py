"""What a start must do about cross-signing, decided from local keys and the server's view.

| local keys | server master key | plan                                              |
|------------|-------------------|---------------------------------------------------|
| none       | none              | generate, save, upload, sign device, sign master  |
| ours       | none              | upload (a crash came between save and upload)     |
| ours       | ours              | only the signatures the server lacks              |
| ours       | other             | alarm (reset_identity: generate and replace, UIA) |
| none       | some              | alarm (reset_identity: generate and replace, UIA) |

An alarm is never resolved by uploading: new cross-signing keys make every
other user's verification of the bot void, so that is the operator's call.
A reset always generates fresh keys: Synapse keeps every public key it ever
held for a user (as a hidden device), so re-uploading an earlier key fails.
Pure: no I/O; the shell (:mod:`mxarchiverd.e2ee.cross_signing`) gathers the inputs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mxarchiverd.e2ee.signing import has_valid_signature

JsonDict = dict[str, Any]


class CrossSigningConflict(RuntimeError):
    """The server's cross-signing identity is not the one this state directory holds."""


@dataclass(frozen=True)
class ServerIdentity:
    """The bot's own entries of a ``/keys/query`` answer."""

    master_key: JsonDict | None
    self_signing_key: JsonDict | None
    device_key: JsonDict | None


@dataclass(frozen=True)
class LocalIdentity:
    user_id: str
    device_id: str
    device_ed25519: str            # from the crypto store's Olm account
    master: str | None = None      # public halves of the sealed keys, if any
    self_signing: str | None = None


@dataclass(frozen=True)
class BootstrapPlan:
    generate: bool = False
    upload_keys: bool = False
    replaces_server_keys: bool = False  # the upload needs user-interactive auth
    sign_device: bool = False
    sign_master: bool = False

    @property
    def uploads_anything(self) -> bool:
        return self.upload_keys or self.sign_device or self.sign_master


def server_identity(query: Mapping[str, Any], user_id: str, device_id: str) -> ServerIdentity:
    """Pick the bot's master, self-signing and device keys out of a ``/keys/query`` body."""
    def entry(section: str) -> JsonDict | None:
        found = (query.get(section) or {}).get(user_id)
        return found if isinstance(found, dict) else None

    devices = (query.get("device_keys") or {}).get(user_id) or {}
    device = devices.get(device_id) if isinstance(devices, dict) else None
    return ServerIdentity(entry("master_keys"), entry("self_signing_keys"),
                          device if isinstance(device, dict) else None)


def single_ed25519(key: Mapping[str, Any] | None, what: str) -> str | None:
    """The public key of a CrossSigningKey object, which holds exactly one."""
    if key is None:
        return None
    keys = key.get("keys")
    values = [v for k, v in keys.items() if k.startswith("ed25519:")] if isinstance(keys, dict) else []
    if len(values) != 1 or not isinstance(values[0], str):
        raise CrossSigningConflict(f"{what}: expected exactly one ed25519 key, got {keys!r}")
    return values[0]


def plan_bootstrap(local: LocalIdentity, server: ServerIdentity,
                   reset_identity: bool = False) -> BootstrapPlan:
    """Decide the steps of this start; raise :class:`CrossSigningConflict` for an alarm."""
    _check_device(local, server)
    server_master = single_ed25519(server.master_key, "server master key")
    if local.master is None:
        return _without_local_keys(server_master, reset_identity)
    if server_master is None:
        return BootstrapPlan(upload_keys=True, sign_device=True, sign_master=True)
    if server_master != local.master:
        if not reset_identity:
            raise CrossSigningConflict(
                f"the server's master key for {local.user_id} is {server_master}, but the "
                f"state directory holds {local.master}; not replacing it (reset_identity "
                "makes new keys and voids every verification of the bot)")
        return BootstrapPlan(generate=True, upload_keys=True, replaces_server_keys=True,
                             sign_device=True, sign_master=True)
    return _missing_signatures(local, server)


def _check_device(local: LocalIdentity, server: ServerIdentity) -> None:
    if server.device_key is None:
        raise CrossSigningConflict(f"device {local.device_id} has no device keys on the server "
                                   "yet; upload them (keys_upload) before bootstrapping")
    published = (server.device_key.get("keys") or {}).get(f"ed25519:{local.device_id}")
    if published != local.device_ed25519:
        raise CrossSigningConflict(
            f"device {local.device_id}: the server publishes ed25519 key {published}, the crypto "
            f"store holds {local.device_ed25519}; the store does not belong to this device")


def _without_local_keys(server_master: str | None, reset_identity: bool) -> BootstrapPlan:
    if server_master is not None and not reset_identity:
        raise CrossSigningConflict(
            f"the server already has a master key ({server_master}) for this user, but the "
            "state directory holds no cross-signing keys (lost state, or set up by another "
            "client); not replacing it (reset_identity replaces it)")
    return BootstrapPlan(generate=True, upload_keys=True,
                         replaces_server_keys=server_master is not None,
                         sign_device=True, sign_master=True)


def _missing_signatures(local: LocalIdentity, server: ServerIdentity) -> BootstrapPlan:
    server_ssk = single_ed25519(server.self_signing_key, "server self-signing key")
    if server_ssk != local.self_signing:
        raise CrossSigningConflict(
            f"the server's self-signing key for {local.user_id} is {server_ssk}, the state "
            f"directory holds {local.self_signing}, under the same master key")
    assert server.master_key is not None and server.device_key is not None and local.self_signing is not None
    ssk_id = f"ed25519:{local.self_signing}"
    device_signed = has_valid_signature(server.device_key, local.user_id, ssk_id,
                                        local.self_signing)
    master_signed = has_valid_signature(server.master_key, local.user_id,
                                        f"ed25519:{local.device_id}", local.device_ed25519)
    return BootstrapPlan(sign_device=not device_signed, sign_master=not master_signed)
