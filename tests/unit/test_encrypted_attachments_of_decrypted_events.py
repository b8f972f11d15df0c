"""A decrypted event's content.file (as nio senders write it) is all the media path needs.

No new code: classify.media_refs finds content.file and info.thumbnail_file, and
media/crypto.py decrypts with them. This pins that contract to nio's own
attachment encryption.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nio.crypto.attachments import encrypt_attachment

from mxarchiverd.classify import media_refs
from mxarchiverd.media.crypto import decrypt_file


def test_nio_encrypted_image_and_thumbnail_are_found_and_decrypt(tmp_path: Path) -> None:
    image, thumb = os.urandom(40_000), os.urandom(3_000)
    image_cipher, image_keys = encrypt_attachment(image)
    thumb_cipher, thumb_keys = encrypt_attachment(thumb)
    content = {"msgtype": "m.image", "body": "cat.png",
               "file": {**image_keys, "url": "mxc://archive.test/image"},
               "info": {"mimetype": "image/png", "size": len(image),
                        "thumbnail_file": {**thumb_keys, "url": "mxc://archive.test/thumb"}}}
    refs = media_refs("m.room.message", content)
    assert [(r.kind, r.matrix_url) for r in refs] == [("file", "mxc://archive.test/image"),
                                                       ("thumbnail", "mxc://archive.test/thumb")]
    for ref, cipher, plain in ((refs[0], image_cipher, image), (refs[1], thumb_cipher, thumb)):
        src, dst = tmp_path / f"{ref.kind}.enc", tmp_path / ref.kind
        src.write_bytes(cipher)
        assert ref.encrypted_file is not None
        assert decrypt_file(src, dst, ref.encrypted_file) == hashlib.sha256(plain).hexdigest()
        assert dst.read_bytes() == plain
