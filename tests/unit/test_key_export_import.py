"""Element key export files: decrypt (own code), import into nio's store, report sessions.

Real crypto on both sides: nio writes exports with its own implementation, the
sessions are real vodozemac Megolm sessions; no homeserver is needed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from nio.crypto import InboundGroupSession, Olm

from mxarchiverd.e2ee.ciphertext import SessionRef
from mxarchiverd.e2ee.key_export import KeyExportError, decrypt_key_export, encrypt_key_export
from mxarchiverd.e2ee.key_import import KeyImportError, import_key_file, import_sessions
from mxarchiverd.e2ee.megolm import find_session
from tests.support.megolm_sender import ROOM, PASSPHRASE, MegolmSender, offline_bot


def test_an_export_written_by_nio_decrypts_and_imports(tmp_path: Path) -> None:
    sender = MegolmSender()
    nio_session = InboundGroupSession(sender.session.session_key.to_base64(), sender.ed25519,
                                      sender.curve25519, ROOM)
    path = tmp_path / "keys.txt"
    Olm.export_keys_static([nio_session], str(path), PASSPHRASE, count=1000)
    bot = offline_bot(tmp_path)
    result = import_key_file(bot, path, PASSPHRASE)
    assert result.imported == [sender.ref] and result.total == 1 and not result.skipped
    assert result.decryptable == [sender.ref]
    assert find_session(bot, sender.ref) is not None


def test_our_writer_and_reader_agree_and_nio_reads_ours_too(tmp_path: Path) -> None:
    sender = MegolmSender()
    text = encrypt_key_export([sender.export_entry()], PASSPHRASE, rounds=1000)
    assert decrypt_key_export(text, PASSPHRASE, "f") == [sender.export_entry()]
    path = tmp_path / "ours.txt"
    path.write_text(text)
    assert [s.id for s in Olm.import_keys_static(str(path), PASSPHRASE)] == [sender.session_id]


def test_a_wrong_passphrase_is_a_clear_error_that_does_not_show_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(encrypt_key_export([MegolmSender().export_entry()], PASSPHRASE, rounds=1000))
    wrong = "not the passphrase at all"
    with pytest.raises(KeyImportError) as refused:
        import_key_file(offline_bot(tmp_path), path, wrong)
    message = str(refused.value)
    assert "wrong passphrase" in message and str(path) in message
    assert wrong not in message and PASSPHRASE not in message


@pytest.mark.parametrize("text,why", [
    ("hello", "not a key export"),
    ("-----BEGIN MEGOLM SESSION DATA-----\nAAAA\n", "truncated key export"),
    ("-----BEGIN MEGOLM SESSION DATA-----\n$$$\n-----END MEGOLM SESSION DATA-----", "not base64"),
    ("-----BEGIN MEGOLM SESSION DATA-----\nAAAA\n-----END MEGOLM SESSION DATA-----", "too short"),
])
def test_files_that_are_not_exports_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(KeyExportError, match=why):
        decrypt_key_export(text, PASSPHRASE, "export.txt")


def test_a_crafted_round_count_is_refused_before_any_work() -> None:
    import base64
    text = encrypt_key_export([], PASSPHRASE, rounds=1000)
    raw = bytearray(base64.b64decode("".join(text.splitlines()[1:-1])))
    raw[33:37] = (2**32 - 1).to_bytes(4, "big")
    body = base64.b64encode(bytes(raw)).decode()
    forged = f"-----BEGIN MEGOLM SESSION DATA-----\n{body}\n-----END MEGOLM SESSION DATA-----"
    with pytest.raises(KeyExportError, match="PBKDF2 rounds"):
        decrypt_key_export(forged, PASSPHRASE, "f")


def test_windows_line_ends_and_indentation_are_tolerated() -> None:
    text = encrypt_key_export([MegolmSender().export_entry()], PASSPHRASE, rounds=1000)
    mangled = "\r\n".join("  " + line for line in text.splitlines()) + "\r\n\r\n"
    assert len(decrypt_key_export(mangled, PASSPHRASE, "f")) == 1


def test_bad_entries_are_skipped_and_listed_the_rest_imports(tmp_path: Path) -> None:
    good, other = MegolmSender(), MegolmSender()
    wrong_id = {**other.export_entry(), "session_id": good.session_id}
    entries = [good.export_entry(), "junk", {**good.export_entry(), "algorithm": "m.megolm.v2"},
               {**other.export_entry(), "session_key": "AAAA"}, wrong_id,
               {**other.export_entry(), "sender_claimed_keys": {}}]
    result = import_sessions(offline_bot(tmp_path), entries)
    assert result.imported == [good.ref] and result.total == 6
    assert [s.split(":")[0] for s in result.skipped] == ["#1", "#2", "#3", "#4", "#5"]
    assert "another session" in result.skipped[3] and "sender_claimed_keys" in result.skipped[4]


def test_an_import_never_replaces_a_key_from_an_earlier_index(tmp_path: Path) -> None:
    sender = MegolmSender()
    first = sender.encrypt({"msgtype": "m.text", "body": "index 0"})
    bot = offline_bot(tmp_path)
    assert import_sessions(bot, [sender.export_entry(index=0)]).imported == [sender.ref]
    later = import_sessions(bot, [sender.export_entry(index=1)])
    assert later.imported == [] and later.already_held == [sender.ref]
    assert later.decryptable == [sender.ref]
    assert find_session(bot, sender.ref).first_known_index == 0
    from mxarchiverd.e2ee.megolm import decrypt_archived
    assert decrypt_archived(bot, first).content["body"] == "index 0"


def test_an_earlier_index_replaces_a_later_one_and_survives_a_reload(tmp_path: Path) -> None:
    sender = MegolmSender()
    bot = offline_bot(tmp_path)
    import_sessions(bot, [sender.export_entry(index=2)])
    assert import_sessions(bot, [sender.export_entry(index=0)]).imported == [sender.ref]
    reloaded = offline_bot(tmp_path, existing=bot)
    assert find_session(reloaded, sender.ref).first_known_index == 0


def test_progress_is_reported_per_batch(tmp_path: Path) -> None:
    senders = [MegolmSender() for _ in range(3)]
    seen: list[tuple[int, int]] = []
    import mxarchiverd.e2ee.key_import as key_import
    old, key_import.SAVE_BATCH = key_import.SAVE_BATCH, 2
    try:
        import_sessions(offline_bot(tmp_path), [s.export_entry() for s in senders],
                        on_progress=lambda done, total: seen.append((done, total)))
    finally:
        key_import.SAVE_BATCH = old
    assert seen == [(2, 3), (3, 3)]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyImportError, match="cannot read"):
        import_key_file(offline_bot(tmp_path), tmp_path / "absent.txt", PASSPHRASE)


def test_refs_are_sortable_and_hashable() -> None:
    assert sorted({SessionRef("!b", "1"), SessionRef("!a", "2")})[0].room_id == "!a"


def test_a_running_bot_adopts_what_a_separate_import_wrote_to_its_store(tmp_path: Path) -> None:
    from mxarchiverd.e2ee.key_import import adopt_stored_sessions
    from mxarchiverd.e2ee.megolm import decrypt_archived
    from mxarchiverd.e2ee.store import CryptoSettings, open_offline
    from tests.support.megolm_sender import BOT, PICKLE_KEY

    sender = MegolmSender()
    event = sender.encrypt({"msgtype": "m.text", "body": "imported elsewhere"})
    daemon = offline_bot(tmp_path)
    account_before = daemon.olm.account.identity_keys
    command = open_offline(CryptoSettings(tmp_path / "bot", PICKLE_KEY), BOT, daemon.device_id)
    import_sessions(command, [sender.export_entry()])
    assert find_session(daemon, sender.ref) is None, "nio reads its store only at load"
    assert adopt_stored_sessions(daemon) == [sender.ref]
    assert adopt_stored_sessions(daemon) == [], "nothing new the second time"
    assert decrypt_archived(daemon, event).content["body"] == "imported elsewhere"
    assert offline_bot(tmp_path, existing=daemon).olm.account.identity_keys == account_before


def test_db_mode_imports_into_a_keyring_store_without_any_login(tmp_path: Path) -> None:
    from mxarchiverd.e2ee.megolm import decrypt_archived
    from mxarchiverd.e2ee.store import CryptoSettings, open_offline
    from tests.support.megolm_sender import PICKLE_KEY

    sender = MegolmSender()
    settings = CryptoSettings(tmp_path / "state", PICKLE_KEY)
    import_sessions(open_offline(settings), [sender.export_entry()])
    reopened = open_offline(settings)
    event = sender.encrypt({"msgtype": "m.text", "body": "archived by DB mode"})
    assert decrypt_archived(reopened, event).content["body"] == "archived by DB mode"
