-- Bot mode (source.mode matrix_sync): where the bot account has got to, what it
-- still has to page, and what it could not see. Every row here is written in the
-- transaction that stores the events it covers (DESIGN.md invariant 8).

-- The /sync position of each bot account: the next /sync starts at next_batch.
CREATE TABLE sync_state (
    account TEXT PRIMARY KEY,
    next_batch TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- /messages work that /sync alone cannot do, resumable page by page:
--   gap      a limited timeline left events out: back from prev_batch to the previous since
--   history  a room's earlier history: back to m.room.create, or as far as the bot may see
--   hole     what the bot missed while kicked, banned or gone: back to the event that opened the hole
CREATE TABLE room_pagination (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('gap', 'history', 'hole')),
    from_token TEXT,
    to_token TEXT,
    stop_event_ids TEXT[] NOT NULL DEFAULT '{}',
    via_admin_api BOOLEAN NOT NULL DEFAULT FALSE,
    hole_id BIGINT,
    -- The next page starts here; NULL once done.
    resume_token TEXT,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    -- Why it ended: end (no more to see), stop_event (reached what the archive holds), stalled.
    outcome TEXT,
    events_seen BIGINT NOT NULL DEFAULT 0,
    create_seen BOOLEAN NOT NULL DEFAULT FALSE,
    restricted_by TEXT,
    lowest_event_id TEXT,
    lowest_ts BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_room_pagination_pending ON room_pagination(created_at) WHERE state = 'pending';

-- Stretches of a room's timeline the bot could not see: after the event that took its
-- access (its kick, ban or leave) and before the event that gave it back (its join).
--   open        still out of the room
--   closed      back in; the stretch between the bounds is not archived yet
--   filled      paged and archived (by the bot itself, or through the admin API)
--   unfillable  the history visibility hides it and no admin token can read it
CREATE TABLE room_holes (
    id BIGSERIAL PRIMARY KEY,
    room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    by_user TEXT,
    reason TEXT,
    after_event_id TEXT,
    after_ts BIGINT,
    before_event_id TEXT,
    before_ts BIGINT,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'filled', 'unfillable')),
    filled_by TEXT,
    note TEXT,
    opened_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE NULLS NOT DISTINCT (room_id, after_event_id)
);
CREATE INDEX idx_room_holes_unfilled ON room_holes(room_id) WHERE state IN ('open', 'closed');

ALTER TABLE monitored_rooms
    -- The bot's own membership, as the last sync said, and why it changed.
    ADD COLUMN bot_membership TEXT,
    ADD COLUMN bot_membership_reason TEXT,
    ADD COLUMN bot_membership_by TEXT,
    ADD COLUMN bot_membership_at TIMESTAMPTZ,
    -- Bot mode's history: complete only when m.room.create was archived with nothing hidden
    -- on the way; otherwise the oldest event reached is the room's known lower bound.
    ADD COLUMN history_complete BOOLEAN,
    ADD COLUMN history_lower_bound_event TEXT,
    ADD COLUMN history_lower_bound_ts BIGINT;

-- Bot mode's names come from the archived state events (archive/room_state.py).
CREATE INDEX idx_messages_state_events ON archived_messages(room_id, event_type, state_key, timestamp DESC)
    WHERE state_key IS NOT NULL;

ALTER TABLE sync_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE room_pagination ENABLE ROW LEVEL SECURITY;
ALTER TABLE room_holes ENABLE ROW LEVEL SECURITY;
