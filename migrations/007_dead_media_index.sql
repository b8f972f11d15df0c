-- Dead-lettered media jobs are counted every few seconds (the uploader's STATUS= numbers)
-- and the newest one's reason is shown by `mxarchiverd status`: without an index both
-- would scan every media job ever queued.
CREATE INDEX idx_media_jobs_dead ON media_jobs(updated_at) WHERE state = 'dead';
