-- The fence check of a batch transaction as one function that raises.
--
-- A batch is sent to the archive in one round trip (archive/batches.py, psycopg's
-- pipeline mode: BEGIN, every statement, COMMIT, then one wait). The fence check
-- therefore cannot answer the client before the batch's writes run; it fails the
-- transaction instead, with SQLSTATE MXA75 (75 is the daemon's FENCED exit code),
-- and the server skips everything after it up to COMMIT. The lock is the one
-- migration 011 describes: FOR KEY SHARE on the lease row where the token is still
-- ours, held to COMMIT, so a takeover waits for the batch in flight.
CREATE FUNCTION mxarchiver_enter_fenced_batch(fence_token BIGINT, idle_ms TEXT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM archive_leadership WHERE name = 'archive' AND token = fence_token FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fencing token % is no longer current: another daemon has taken over the lease',
            fence_token USING ERRCODE = 'MXA75';
    END IF;
    -- A leader frozen inside a batch would otherwise hold the row lock, and with it every
    -- takeover, until TCP noticed; the token is left for audit triggers (the HA tests').
    PERFORM set_config('idle_in_transaction_session_timeout', idle_ms, true);
    PERFORM set_config('mxarchiverd.fence', fence_token::text, true);
END $$;
