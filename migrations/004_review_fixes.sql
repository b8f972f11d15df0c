-- Fixes from the archive-path review: timestamps out of PostgreSQL's range,
-- Synapse's redaction recheck, the pre-edit content of rows kept as raw text,
-- shared media objects, and rooms that become archived again.

-- Matrix allows any 64-bit origin_server_ts; PostgreSQL's timestamptz does not.
-- Out of years 1..9999 the time is unknown (NULL) rather than a failed batch.
CREATE FUNCTION mxarchiver_ms_to_timestamptz(ms BIGINT) RETURNS TIMESTAMPTZ
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN ms BETWEEN -62135596800000 AND 253402300799999 THEN to_timestamp(ms / 1000.0) END $$;

CREATE OR REPLACE VIEW messages WITH (security_invoker = true) AS
SELECT event_id, room_id, room_name, sender, sender_display_name,
       mxarchiver_ms_to_timestamptz(timestamp) AS timestamp, message_type, content,
       whatsapp_chat_id, whatsapp_message_id, redacted, edited_at
  FROM archived_messages;

ALTER TABLE archived_messages
    -- Synapse's redactions.recheck: honour the redaction only from the original sender's server.
    ADD COLUMN redaction_recheck BOOLEAN,
    -- The content before any edit, for rows whose `event` could not be stored (event_raw).
    ADD COLUMN original_content JSONB;

-- Media objects are shared by every message that carries the same mxc.
CREATE INDEX idx_media_jobs_matrix_url ON media_jobs(matrix_url, media_kind);

ALTER TABLE monitored_rooms
    -- Whether the config file lists the room now (explicit mode); NULL for other rooms.
    ADD COLUMN config_listed BOOLEAN;

-- A backfill room enabled again (by an operator in Supabase or by the config)
-- missed what happened while it was off: read its history again.
CREATE FUNCTION mxarchiver_room_reenabled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.enabled IS FALSE AND NEW.enabled IS TRUE AND NEW.backfill THEN
        NEW.history_done := FALSE;
        NEW.history_cursor := NULL;
        NEW.history_upto := GREATEST(NEW.history_upto,
            COALESCE((SELECT position FROM archive_cursors WHERE stream = 'events'), 0));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER monitored_rooms_reenabled BEFORE UPDATE OF enabled ON monitored_rooms
    FOR EACH ROW EXECUTE FUNCTION mxarchiver_room_reenabled();
