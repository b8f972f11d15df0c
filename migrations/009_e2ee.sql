-- End-to-end encrypted rooms. An event that could not be decrypted yet is archived as
-- ciphertext (event_type m.room.encrypted) and listed here; when its key arrives (a
-- to-device room key, a forwarded key, `mxarchiverd keys import`) the row is decrypted
-- in place: content, message_type, event_type and relations from the plaintext, the
-- ciphertext kept in `event`, decrypted_at set, and the entry here removed.
CREATE TABLE pending_decryption (
    event_id TEXT PRIMARY KEY REFERENCES archived_messages(event_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    session_id TEXT,
    reason TEXT NOT NULL,
    withheld_code TEXT,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_pending_decryption_session ON pending_decryption(room_id, session_id);

-- Senders that refused a key (m.room_key.withheld), with their code: why an event stays encrypted.
CREATE TABLE withheld_keys (
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (room_id, session_id, sender)
);

ALTER TABLE archived_messages ADD COLUMN decrypted_at TIMESTAMPTZ;

-- `keys import` finds the ciphertext of the sessions it imported, in archives of either mode.
CREATE INDEX idx_messages_megolm_session ON archived_messages(room_id, (content ->> 'session_id'))
    WHERE event_type = 'm.room.encrypted';

ALTER TABLE pending_decryption ENABLE ROW LEVEL SECURITY;
ALTER TABLE withheld_keys ENABLE ROW LEVEL SECURITY;
