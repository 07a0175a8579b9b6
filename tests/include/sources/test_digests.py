"""The source digests a watcher compares: a folder's paths/sizes/mtimes and an S3 prefix's keys/ETags."""

from __future__ import annotations

import os
import uuid

from conftest import put_objects, write_corpus

from ragtrail.sources.digests import folder_digest, last_digest, remember_digest, s3_digest, source_digest


def test_a_folder_digest_changes_with_a_new_edited_or_deleted_file_and_only_then(tmp_path):
    """Adding, editing (size or mtime) and deleting a file each change the digest; hidden files and re-reads do not."""
    write_corpus(tmp_path, {"a.md": "alpha", "sub/b.txt": "beta"})
    first = folder_digest(tmp_path)
    assert folder_digest(tmp_path) == first == source_digest(f"file://{tmp_path}")
    write_corpus(tmp_path, {".hidden": "x", ".git/HEAD": "ref"})
    assert folder_digest(tmp_path) == first
    write_corpus(tmp_path, {"c.md": "gamma"})
    added = folder_digest(tmp_path)
    assert added != first
    st = (tmp_path / "c.md").stat()
    os.utime(tmp_path / "c.md", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same size, touched
    touched = folder_digest(tmp_path)
    assert touched != added
    (tmp_path / "c.md").unlink()
    assert folder_digest(tmp_path) == first


def test_an_s3_digest_changes_with_a_new_or_overwritten_object(s3_server):
    bucket = f"watch-{uuid.uuid4().hex[:8]}"
    put_objects(s3_server.client, bucket, {"docs/a.md": "alpha", "docs2/x.md": "outside the prefix"})
    first = s3_digest(f"s3://{bucket}/docs", s3_server.client)
    assert s3_digest(f"s3://{bucket}/docs/", s3_server.client) == first
    put_objects(s3_server.client, bucket, {"docs2/y.md": "still outside"})
    assert s3_digest(f"s3://{bucket}/docs", s3_server.client) == first
    put_objects(s3_server.client, bucket, {"docs/b.md": "beta"})
    second = s3_digest(f"s3://{bucket}/docs", s3_server.client)
    put_objects(s3_server.client, bucket, {"docs/b.md": "beta, edited"})  # a new ETag
    assert len({first, second, source_digest(f"s3://{bucket}/docs", lambda: s3_server.client)}) == 3


def test_the_last_digest_survives_a_new_process_state(tmp_path, monkeypatch):
    """What a watcher remembered is read back from the data folder (as after a restart); junk reads as unknown."""
    monkeypatch.setenv("RAGTRAIL_HOME", str(tmp_path))
    assert last_digest("k") is None
    remember_digest("k", "abc")
    assert last_digest("k") == "abc" and last_digest("other") is None
    next((tmp_path / "watch").glob("*.json")).write_text("{not json")
    assert last_digest("k") is None
