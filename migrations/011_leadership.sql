-- High availability (daemon.ha): which daemon leads the source-following stages.
--
-- One row per archive: the lease. The leader renews expires_at; a standby may
-- take it over once it has expired, and every takeover increments token (the
-- fencing token). Each batch transaction locks this row FOR KEY SHARE where its
-- token still matches: a renewal (it changes no key column) never waits for a
-- batch, while a takeover (it changes token, a unique column) waits for the
-- batch in flight to commit, and any later batch of the old leader finds a
-- different token and writes nothing (archive/leadership.py).
-- Every time is the database's own clock, so the hosts' clocks do not matter.
CREATE TABLE archive_leadership (
    name TEXT PRIMARY KEY CHECK (name = 'archive'),
    holder TEXT,
    token BIGINT NOT NULL UNIQUE,
    acquired_at TIMESTAMPTZ,
    renewed_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO archive_leadership (name, holder, token, expires_at) VALUES ('archive', NULL, 0, 'epoch');

-- Every daemon that takes part (leader and standbys), seen_at renewed with each
-- round of its lease keeper, so that `status` can list the standbys.
CREATE TABLE archive_daemons (
    holder TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    is_leader BOOLEAN NOT NULL DEFAULT FALSE
);

ALTER TABLE archive_leadership ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive_daemons ENABLE ROW LEVEL SECURITY;
