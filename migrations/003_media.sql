-- Media archiving: durable jobs written in the same transaction as their message,
-- claimed by uploaders with FOR UPDATE SKIP LOCKED, and the analyzer's queue (seed 001).

CREATE TABLE media_jobs (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES archived_messages(event_id) ON DELETE CASCADE,
    -- 'file' for the attachment itself, 'thumbnail' for info.thumbnail_url/_file.
    media_kind TEXT NOT NULL,
    matrix_url TEXT NOT NULL,
    -- content.file (or info.thumbnail_file) of an encrypted attachment: key, iv, hashes.
    encrypted_file JSONB,
    media_type TEXT NOT NULL,
    original_filename TEXT,
    mime_type TEXT,
    declared_size BIGINT,
    -- pending -> done | refused (policy or unsafe mxc) | dead (retries exhausted);
    -- purge: the message was redacted under redaction_policy purge, remove the object.
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'done', 'refused', 'dead', 'purge', 'purged')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (event_id, media_kind, matrix_url)
);
CREATE INDEX idx_media_jobs_due ON media_jobs(next_attempt_at) WHERE state IN ('pending', 'purge');

ALTER TABLE archived_media
    ADD COLUMN media_kind TEXT NOT NULL DEFAULT 'file',
    ADD COLUMN sha256 TEXT,
    ADD COLUMN encrypted BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ADD CONSTRAINT archived_media_event_kind_url_key UNIQUE (event_id, media_kind, matrix_url);

-- Seed 001: one job per archived file for the user's analyzer.
CREATE TABLE analysis_jobs (
    id BIGSERIAL PRIMARY KEY,
    media_id BIGINT NOT NULL UNIQUE REFERENCES archived_media(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    storage_bucket TEXT NOT NULL,
    storage_path TEXT NOT NULL,
    mime_type TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE VIEW media WITH (security_invoker = true) AS
SELECT m.event_id, m.media_type, m.original_filename, m.file_size, m.mime_type, m.matrix_url,
       m.storage_bucket, m.storage_path, m.public_url, m.sha256, m.archived_at
  FROM archived_media m
 WHERE m.media_kind = 'file';

ALTER TABLE media_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE analysis_jobs ENABLE ROW LEVEL SECURITY;
