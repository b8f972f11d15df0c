"""The cross-signing decision table: upload once, repair missing signatures, alarm on conflicts."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mxarchiverd.e2ee.cross_signing_keys import CrossSigningKeys, key_object
from mxarchiverd.e2ee.cross_signing_plan import (
    BootstrapPlan, CrossSigningConflict, LocalIdentity, ServerIdentity, plan_bootstrap,
    server_identity,
)
from mxarchiverd.e2ee.signing import public_key_b64, sign_json

USER, DEVICE = "@bot:archive.test", "BOTDEVICE"
DEVICE_KEY = Ed25519PrivateKey.generate()
DEVICE_PUBLIC = public_key_b64(DEVICE_KEY)
OURS = CrossSigningKeys.generate(USER)
THEIRS = CrossSigningKeys.generate(USER)
FULL = BootstrapPlan(upload_keys=True, sign_device=True, sign_master=True)


def device_key(signed_by: CrossSigningKeys | None = None) -> dict:
    device = {"user_id": USER, "device_id": DEVICE, "algorithms": ["m.megolm.v1.aes-sha2"],
              "keys": {f"ed25519:{DEVICE}": DEVICE_PUBLIC, f"curve25519:{DEVICE}": "c"}}
    device = sign_json(device, USER, f"ed25519:{DEVICE}", DEVICE_KEY)
    if signed_by is not None:
        device = sign_json(device, USER, f"ed25519:{signed_by.self_signing_public}",
                           signed_by.self_signing)
    return device


def master_key(keys: CrossSigningKeys, signed_by_device: bool = False) -> dict:
    master = key_object(USER, "master", keys.master_public)
    return sign_json(master, USER, f"ed25519:{DEVICE}", DEVICE_KEY) if signed_by_device else master


def server(keys: CrossSigningKeys | None, device_signed: bool = False,
           master_signed: bool = False) -> ServerIdentity:
    if keys is None:
        return ServerIdentity(None, None, device_key())
    ssk = sign_json(key_object(USER, "self_signing", keys.self_signing_public), USER,
                    f"ed25519:{keys.master_public}", keys.master)
    return ServerIdentity(master_key(keys, master_signed), ssk,
                          device_key(keys if device_signed else None))


def local(keys: CrossSigningKeys | None) -> LocalIdentity:
    return LocalIdentity(USER, DEVICE, DEVICE_PUBLIC, keys.master_public if keys else None,
                         keys.self_signing_public if keys else None)


def test_first_start_generates_uploads_and_signs() -> None:
    assert plan_bootstrap(local(None), server(None)) == BootstrapPlan(
        generate=True, upload_keys=True, sign_device=True, sign_master=True)


def test_keys_saved_but_never_uploaded_are_uploaded_now() -> None:
    assert plan_bootstrap(local(OURS), server(None)) == FULL


def test_a_later_start_with_everything_in_place_uploads_nothing() -> None:
    plan = plan_bootstrap(local(OURS), server(OURS, device_signed=True, master_signed=True))
    assert plan == BootstrapPlan() and not plan.uploads_anything


@pytest.mark.parametrize("device_signed,master_signed", [(False, True), (True, False), (False, False)])
def test_only_missing_signatures_are_uploaded(device_signed: bool, master_signed: bool) -> None:
    plan = plan_bootstrap(local(OURS), server(OURS, device_signed, master_signed))
    assert plan == BootstrapPlan(sign_device=not device_signed, sign_master=not master_signed)


def test_a_signature_by_someone_elses_key_does_not_count() -> None:
    forged = server(OURS, master_signed=True)
    wrong_signer = device_key(THEIRS)  # signed, but by a self-signing key that is not ours
    wrong_signer["signatures"][USER][f"ed25519:{OURS.self_signing_public}"] = (
        wrong_signer["signatures"][USER].pop(f"ed25519:{THEIRS.self_signing_public}"))
    plan = plan_bootstrap(local(OURS), ServerIdentity(forged.master_key, forged.self_signing_key,
                                                      wrong_signer))
    assert plan.sign_device and not plan.upload_keys


def test_another_master_key_on_the_server_is_an_alarm_not_an_upload() -> None:
    with pytest.raises(CrossSigningConflict) as alarm:
        plan_bootstrap(local(OURS), server(THEIRS))
    assert THEIRS.master_public in str(alarm.value) and OURS.master_public in str(alarm.value)


def test_server_keys_without_local_keys_are_an_alarm() -> None:
    with pytest.raises(CrossSigningConflict, match="holds no cross-signing keys"):
        plan_bootstrap(local(None), server(THEIRS))


def test_reset_identity_makes_new_keys_and_replaces_with_interactive_auth() -> None:
    reset = BootstrapPlan(generate=True, upload_keys=True, replaces_server_keys=True,
                          sign_device=True, sign_master=True)
    assert plan_bootstrap(local(OURS), server(THEIRS), reset_identity=True) == reset
    assert plan_bootstrap(local(None), server(THEIRS), reset_identity=True) == reset
    # Without a conflict there is nothing to reset.
    assert plan_bootstrap(local(OURS), server(OURS, True, True), reset_identity=True) == BootstrapPlan()


def test_a_store_whose_device_key_the_server_does_not_publish_is_refused() -> None:
    stranger = LocalIdentity(USER, DEVICE, public_key_b64(Ed25519PrivateKey.generate()))
    with pytest.raises(CrossSigningConflict, match="does not belong to this device"):
        plan_bootstrap(stranger, server(None))
    with pytest.raises(CrossSigningConflict, match="keys_upload"):
        plan_bootstrap(local(None), ServerIdentity(None, None, None))


def test_a_self_signing_key_that_is_not_ours_under_our_master_is_an_alarm() -> None:
    mixed = server(OURS)
    other_ssk = server(THEIRS).self_signing_key
    with pytest.raises(CrossSigningConflict, match="self-signing"):
        plan_bootstrap(local(OURS), ServerIdentity(mixed.master_key, other_ssk, mixed.device_key))


def test_server_identity_reads_a_keys_query_answer() -> None:
    answer = {"device_keys": {USER: {DEVICE: device_key()}},
              "master_keys": {USER: master_key(OURS)}, "self_signing_keys": {},
              "failures": {}}
    found = server_identity(answer, USER, DEVICE)
    assert found.master_key == master_key(OURS)
    assert found.self_signing_key is None and found.device_key == device_key()
    assert server_identity({}, USER, DEVICE) == ServerIdentity(None, None, None)
