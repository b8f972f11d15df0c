-- What the database-reading archiver needs beyond seed 000: the full event, names,
-- WhatsApp ids, relations, redaction details, stream cursors, per-room history
-- progress and a quarantine for events that cannot be stored as they are.

ALTER TABLE archived_messages
    ADD COLUMN event_type TEXT,
    ADD COLUMN state_key TEXT,
    ADD COLUMN room_name TEXT,
    ADD COLUMN sender_display_name TEXT,
    ADD COLUMN whatsapp_chat_id TEXT,
    ADD COLUMN whatsapp_message_id TEXT,
    ADD COLUMN whatsapp_sender_id TEXT,
    ADD COLUMN sender_phone TEXT,
    ADD COLUMN stream_ordering BIGINT,
    ADD COLUMN topological_ordering BIGINT,
    -- The complete event as Synapse stored it. NULL only when JSONB cannot hold
    -- it (a \u0000 escape, invalid JSON); event_raw then keeps the exact text.
    ADD COLUMN event JSONB,
    ADD COLUMN event_raw TEXT,
    ADD COLUMN archive_problem TEXT,
    ADD COLUMN encrypted BOOLEAN NOT NULL DEFAULT FALSE,
    -- m.relates_to of this event: m.replace, m.annotation (with reaction_key), m.thread, ...
    ADD COLUMN relation_type TEXT,
    ADD COLUMN relates_to_event_id TEXT,
    ADD COLUMN reaction_key TEXT,
    -- For m.room.redaction rows: the event they redact (both room-version layouts).
    ADD COLUMN redacts TEXT,
    ADD COLUMN redacted_at TIMESTAMPTZ,
    ADD COLUMN redacted_by TEXT,
    ADD COLUMN redaction_reason TEXT,
    ADD COLUMN redaction_event_id TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();

CREATE INDEX idx_messages_relates_to ON archived_messages(relates_to_event_id, relation_type)
    WHERE relates_to_event_id IS NOT NULL;
CREATE INDEX idx_messages_redacts ON archived_messages(redacts) WHERE redacts IS NOT NULL;
CREATE INDEX idx_messages_thread ON archived_messages(thread_id) WHERE thread_id IS NOT NULL;

ALTER TABLE monitored_rooms
    -- Seed 001, phase 3.
    ADD COLUMN whatsapp_id TEXT,
    ADD COLUMN bridge_type TEXT DEFAULT 'whatsapp',
    ADD COLUMN encryption TEXT,
    ADD COLUMN backfill BOOLEAN NOT NULL DEFAULT TRUE,
    -- What the config file said last time; a change in the file overrides an
    -- operator's flip of `enabled`, an unchanged file leaves the flip alone.
    ADD COLUMN config_enabled BOOLEAN,
    ADD COLUMN discovered_by TEXT NOT NULL DEFAULT 'config',
    -- Source stream position when the room was added: without backfill, only
    -- events after it are archived.
    ADD COLUMN added_at_stream BIGINT NOT NULL DEFAULT 0,
    -- History that the live stream had already passed when the room was added
    -- (stream orderings <= history_upto) is read per room, up from history_cursor.
    ADD COLUMN history_upto BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN history_cursor BIGINT,
    ADD COLUMN history_done BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();

CREATE INDEX idx_monitored_rooms_whatsapp ON monitored_rooms(whatsapp_id) WHERE whatsapp_id IS NOT NULL;

-- Durable read positions in Synapse's streams. Moved only in the transaction that
-- stores the rows they cover.
CREATE TABLE archive_cursors (
    stream TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Events that could not be archived as they are, with the reason. The stream goes on.
CREATE TABLE quarantined_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT,
    stream_ordering BIGINT,
    reason TEXT NOT NULL,
    raw_json TEXT,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Every version of an edited message: the original first, then each m.replace.
CREATE VIEW message_versions WITH (security_invoker = true) AS
SELECT o.event_id AS original_event_id, o.event_id AS version_event_id, o.sender,
       o.timestamp, o.event -> 'content' AS content, 0 AS is_edit
  FROM archived_messages o
 WHERE o.relation_type IS DISTINCT FROM 'm.replace'
   AND EXISTS (SELECT 1 FROM archived_messages e
                WHERE e.relates_to_event_id = o.event_id AND e.relation_type = 'm.replace')
UNION ALL
SELECT e.relates_to_event_id, e.event_id, e.sender, e.timestamp,
       e.content -> 'm.new_content', 1
  FROM archived_messages e
 WHERE e.relation_type = 'm.replace';

CREATE VIEW reactions WITH (security_invoker = true) AS
SELECT relates_to_event_id AS target_event_id, reaction_key AS key, sender,
       event_id AS reaction_event_id, timestamp, redacted
  FROM archived_messages
 WHERE relation_type = 'm.annotation';

-- Seed 001's names, so that its analyzer keeps working.
CREATE VIEW messages WITH (security_invoker = true) AS
SELECT event_id, room_id, room_name, sender, sender_display_name,
       to_timestamp(timestamp / 1000.0) AS timestamp, message_type, content,
       whatsapp_chat_id, whatsapp_message_id, redacted, edited_at
  FROM archived_messages;

-- Row level security without policies: Supabase's anon and authenticated roles
-- read and write nothing; the archiver's own role (table owner) is unaffected.
ALTER TABLE archived_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE archived_media ENABLE ROW LEVEL SECURITY;
ALTER TABLE monitored_rooms ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE quarantined_events ENABLE ROW LEVEL SECURITY;
