-- Media objects are shared by every message that carries the same mxc, so an
-- uploader deleting one (purge) can race another uploading it. Each delete is
-- stamped here (clock time after the delete); an upload of the same object
-- claimed before that stamp uploads again instead of recording a missing file.
ALTER TABLE media_jobs ADD COLUMN object_deleted_at TIMESTAMPTZ;
