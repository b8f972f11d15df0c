-- Seed 000's schema, exactly as the user wrote it. Later migrations extend it;
-- this file never changes (a test compares the catalog with it).

-- Messages table
CREATE TABLE archived_messages (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT UNIQUE NOT NULL,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    message_type TEXT NOT NULL,
    content JSONB NOT NULL,
    thread_id TEXT,
    reply_to_event_id TEXT,
    edited_at TIMESTAMPTZ,
    redacted BOOLEAN DEFAULT FALSE,
    archived_at TIMESTAMPTZ DEFAULT NOW()
);

-- Media files table (linked to messages via event_id)
CREATE TABLE archived_media (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES archived_messages(event_id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    original_filename TEXT,
    file_size BIGINT,
    mime_type TEXT,
    matrix_url TEXT NOT NULL,
    storage_bucket TEXT NOT NULL DEFAULT 'matrix-media',
    storage_path TEXT NOT NULL,
    public_url TEXT NOT NULL,
    archived_at TIMESTAMPTZ DEFAULT NOW()
);

-- Room configuration table
CREATE TABLE monitored_rooms (
    id BIGSERIAL PRIMARY KEY,
    room_id TEXT UNIQUE NOT NULL,
    room_name TEXT,
    room_alias TEXT,
    enabled BOOLEAN DEFAULT TRUE,
    last_sync_token TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Indexes for performance
CREATE INDEX idx_messages_room_timestamp ON archived_messages(room_id, timestamp DESC);
CREATE INDEX idx_messages_sender ON archived_messages(sender);
CREATE INDEX idx_media_event_id ON archived_media(event_id);
CREATE INDEX idx_media_storage_path ON archived_media(storage_bucket, storage_path);
