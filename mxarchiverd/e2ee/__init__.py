"""End-to-end encryption for bot mode: Megolm decryption now and later, cross-signing, keys.

Why a package of its own rather than a part of ``sources/matrix_sync``: the late
half of this work serves every archive, not only the sync source. ``keys import``
decrypts ciphertext that DB mode archived, and the pending index, withheld
records and signature checks are plain data that status and the archive side use
without a Matrix connection.

Import rule: the pure modules (canonical_json, signing, sealed_file, pending,
room_keys, cross_signing_plan, cross_signing_keys) never import nio, so DB mode can
use them without the ``bot`` extra. Modules that drive nio (store, megolm,
key_import, cross_signing, matrix_http, backup) import it when they are imported;
import them only in bot mode or inside the command that needs them.
"""
