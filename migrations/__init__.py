"""SQL migrations, shipped inside the package as mxarchiverd.migrations (see setup.cfg)."""
