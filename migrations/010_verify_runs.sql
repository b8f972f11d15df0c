-- Every `mxarchiverd verify` records what it found, so that the metrics endpoint
-- (and anyone reading the archive) can tell when the archive was last proven
-- complete and what the last check found. One row per run; old rows are history.
CREATE TABLE verify_runs (
    id BIGSERIAL PRIMARY KEY,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    source_mode TEXT NOT NULL,
    -- The scope it checked: {"rooms": [...], "since": ms, "media": bool}.
    scope JSONB NOT NULL DEFAULT '{}'::jsonb,
    rooms_checked INTEGER NOT NULL,
    -- problem kind -> how many (verification/problems.py KINDS); {} when complete.
    problems JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- With --repair: what was done, action -> count.
    repaired JSONB,
    exit_code INTEGER NOT NULL
);
CREATE INDEX idx_verify_runs_finished ON verify_runs(finished_at DESC);
ALTER TABLE verify_runs ENABLE ROW LEVEL SECURITY;
