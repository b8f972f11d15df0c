"""The grant that fixes what PostgreSQL refused the archive role, written as it must be typed."""
from __future__ import annotations

from mxarchiverd.archive.privileges import advice, ident


def test_names_are_quoted_only_where_sql_needs_it() -> None:
    assert ident("mxarchiver") == "mxarchiver"
    assert ident("Supabase Admin") == '"Supabase Admin"' and ident('a"b') == '"a""b"'


def test_each_refusal_gets_its_grant() -> None:
    assert "`GRANT postgres TO mxarchiver`" in advice("mxarchiver", "must be owner of table archived_media",
                                                      "postgres", "public")
    assert "`GRANT USAGE, CREATE ON SCHEMA archive TO mxarchiver`" in advice(
        "mxarchiver", "permission denied for schema archive", "postgres", "archive")
    table = advice("Archiver", "permission denied for table media_jobs", "postgres", "public")
    assert 'ON ALL TABLES IN SCHEMA public TO "Archiver"' in table and "ON ALL SEQUENCES" in table
    assert "owns the archive tables" in advice("mxarchiver", "permission denied to create extension", None, "public")
