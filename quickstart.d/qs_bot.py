"""./quickstart --bot: the same sample archived by a bot user through the client API (source.mode matrix_sync).

The bot account is registered like alice and bob (Synapse's shared-secret admin
API), alice invites it into the room after the conversation, and the archiver logs
in with its password, accepts the invite and reads the room's history back through
/messages before it follows /sync. Its password and the key of its crypto store go
to 0600 files named by the config's `*_file` keys, as a real deployment keeps them.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from qs_daemon import CONFIG_NAME, LOG_NAME, SAMPLE_RUN_SETTINGS
from qs_postgres import ARCHIVE_DB
from tests.support.daemon import Daemon
from tests.support.nio_driver import register_bot
from tests.support.postgres import Cluster
from tests.support.synapse import SynapseServer

BOT_LOCALPART = "archiver"
PASSWORD_FILE = "bot-password"
PICKLE_KEY_FILE = "bot-pickle-key"
STATE_DIR = "bot-state"

CONFIG_TEMPLATE = """\
# Written by ./quickstart --bot: the archiver as the Matrix user {user_id}, following
# its rooms through the client API (/sync, and /messages for history and gaps), with
# the archive on the quickstart's private PostgreSQL and media in a local directory.
# For a real deployment, see the end of ./quickstart --bot's output.
source:
  mode: matrix_sync

matrix:
  homeserver_url: "{homeserver_url}"
  username: "{user_id}"
  password_file: {password_file}
  # Encrypts the bot's crypto store in state_dir; losing it loses the device's keys.
  pickle_key_file: {pickle_key_file}
  state_dir: {state_dir}
  device_name: mxarchiverd quickstart
  # listed + rooms: [] = accept invites to any room, and archive every room the bot is in.
  accept_invites: listed
  # Small (the default is 50), so that even the sample's short history is read back
  # through /messages, as a real room's would be.
  timeline_limit: 10

archive:
  database_url: "{archive_db_url}"
  storage_backend: file
  storage_path: {storage_path}

rooms: []

processing:
  poll_interval: 200ms
  # A short long-poll: a sample run should stop quickly (the default is 30s).
  sync_timeout: 2s
  retry_delay: 1s

""" + SAMPLE_RUN_SETTINGS


@dataclass(frozen=True)
class BotAccount:
    user_id: str
    password: str


def register(server: SynapseServer) -> BotAccount:
    """The bot's account; the device its registration created is logged out again.

    The archiver logs in itself and keeps that one device for good; a second,
    unused device would only be another place senders share room keys with.
    """
    return BotAccount(*register_bot(server, BOT_LOCALPART))


def write_secret(path: Path, value: str) -> Path:
    """`value` in a new file only its owner can read (the config names it, never holds it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return path


def prepare(data_dir: Path, cluster: Cluster, storage: Path, homeserver_url: str, bot: BotAccount) -> Daemon:
    """The launcher, with data_dir/mxarchiverd.yaml and the two secret files written (not started yet)."""
    password_file = write_secret(data_dir / PASSWORD_FILE, bot.password)
    # 32 random bytes: well past the 16 characters matrix.pickle_key needs.
    pickle_key_file = write_secret(data_dir / PICKLE_KEY_FILE, secrets.token_urlsafe(32))
    daemon = Daemon(data_dir, config_path=data_dir / CONFIG_NAME, log_path=data_dir / LOG_NAME)
    daemon.write_config(CONFIG_TEMPLATE.format(
        user_id=bot.user_id, homeserver_url=homeserver_url, password_file=password_file,
        pickle_key_file=pickle_key_file, state_dir=data_dir / STATE_DIR, archive_db_url=cluster.url(ARCHIVE_DB),
        storage_path=storage,
    ))
    return daemon


def limits_section() -> str:
    return """\
What bot mode cannot see (the database mode, ./quickstart without --bot, sees all of it)
  * Kicks: while the bot is out of a room it sees nothing there. mautrix-whatsapp's portal
    resync kicks Matrix users "not in remote chat": set bridge.kick_matrix_users: false in
    the bridge's config (v0.2511.0 or newer). A kick is logged, shown by `status` and
    recorded as a hole (last event before, first after rejoining); `verify` names it until
    it is filled: by the bot itself where history is shared, through Synapse's admin API
    when the account is a server admin (matrix.use_admin_api), else it stays "unfillable".
  * History visibility: in a room whose m.room.history_visibility is "joined" or
    "invited", what was sent before the bot's join (or invite) is invisible to it; the
    room's history is then recorded as known down to its first visible event, not complete.
  * Content redacted before the bot read it comes back empty from the server (above:
    the REDACTED rows without a body); the database mode still finds it for 7 days.
  * Encrypted rooms: only messages whose keys reach the bot's device are plaintext; the
    rest is archived as ciphertext and counted pending until a key arrives."""


def deployment_section(config_path: Path) -> str:
    return f"""\
Run it as a bot against your homeserver
  Copy {config_path} and set:
    matrix.homeserver_url    your homeserver's client API (https://matrix.example.org)
    matrix.username          the bot's user id, e.g. @archiver:example.org (create the account first)
    matrix.password_file     a 0600 file holding its password (or matrix.access_token_file)
    matrix.pickle_key_file   a 0600 file holding 16+ random characters; keep it: it unlocks the bot's keys
    matrix.state_dir         /var/lib/mxarchiverd/matrix (the default): its login, device and keys
    rooms                    the rooms to archive (room_id, backfill: true for their history); [] = every room
  then invite the bot to those rooms; for the archive, set the supabase.* keys as printed by
  ./quickstart (without --bot) and delete archive.database_url and archive.storage_path.
  Then:  mxarchiverd --config FILE check-config && mxarchiverd --config FILE run"""
