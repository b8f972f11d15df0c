"""Where archived data goes: the archive database and object storage."""
