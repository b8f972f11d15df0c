"""End-to-end encryption for bot mode: Megolm decryption now and later, cross-signing, keys.

Why a package of its own rather than a part of ``sources/matrix_sync``: the late
half of this work serves every archive, not only the sync source. ``keys import``
decrypts ciphertext that DB mode archived, and the pending index, withheld
records and signature checks are plain data that status and the archive side use
without a Matrix connection.

Import rule: no module here imports nio (or vodozemac, aiohttp, peewee) at import
time; the functions that drive nio import it when called. So DB mode, status and
the CLI can import this package without the ``bot`` extra installed. The pure
modules (canonical_json, signing, sealed_file, ciphertext, pending, room_keys,
cross_signing_plan, cross_signing_keys, key_export) never need nio at all.
"""
