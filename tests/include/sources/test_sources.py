"""Sources list lazily and never lead outside their root: local folders and S3 prefixes (real moto server)."""

from __future__ import annotations

import json

import pytest
from conftest import put_objects, write_corpus

from ragtrail.sources.listing import iter_local, iter_source, parse_s3_uri, unsafe_key
from ragtrail_airflow.rag.s3 import s3_client_factory

BUCKET = "listing-tests"


def test_local_symlinks_outside_the_root_are_flagged_not_followed(tmp_path):
    """A file or folder symlink leaving the root is reported, never read; one inside the root is fine."""
    outside = write_corpus(tmp_path / "outside", {"secret.txt": "do not read", "dir/x.md": "nor this"})
    root = write_corpus(tmp_path / "root", {"a.md": "alpha", "sub/b.txt": "beta", ".git/config": "hidden"})
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "leakdir").symlink_to(outside / "dir")
    (root / "alias.md").symlink_to(root / "a.md")
    items = {i.doc_id: i for i in iter_local(str(root))}
    assert set(items) == {"a.md", "alias.md", "leak.txt", "leakdir", "sub/b.txt"}
    assert items["leak.txt"].skip_reason == items["leakdir"].skip_reason == "symlink_outside_root"
    assert items["leak.txt"].path is None and items["leakdir"].path is None
    assert items["alias.md"].skip_reason is None and items["alias.md"].read_bytes() == b"alpha"
    assert items["a.md"].mtime and items["a.md"].etag is None


@pytest.mark.parametrize("key,unsafe", [
    ("docs/a.md", False), ("docs/deep/er/b.pdf", False), ("a..b/c.txt", False),
    ("../evil.txt", True), ("docs/../../evil.txt", True), ("docs//a.md", True), ("/abs.txt", True),
    ("docs/./a.md", True), ("docs/..", True), ("a\\..\\b.txt", True), ("bad\x00name.txt", True), ("", True),
])
def test_unsafe_keys(key, unsafe):
    assert unsafe_key(key) is unsafe


def test_s3_uri_parsing():
    assert parse_s3_uri("s3://bucket/some/prefix") == ("bucket", "some/prefix")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="credentials"):
        parse_s3_uri("s3://AKIA:secret@bucket/prefix")


@pytest.fixture(scope="module")
def listing_bucket(s3_server):
    objects = {f"many/{i:05d}.txt": "x" for i in range(1_234)}
    objects.update({"docs/a.md": "alpha", "docs/nested/deeper/b.txt": "beta", "docs/folder/": "",
                    "docs/.hidden.md": "h", "docs/../escape.txt": "e", "docs//double.md": "d",
                    "docs2/not-me.md": "no", "single.md": "one"})
    put_objects(s3_server.client, BUCKET, objects)
    return s3_server


def test_s3_listing_pages_lazily_through_the_s3_hook(listing_bucket):
    """1,234 keys come in 1,000-key pages fetched only as the iterator advances (via the S3Hook's client)."""
    client = s3_client_factory("aws_default")()
    assert client.meta.endpoint_url == listing_bucket.endpoint  # endpoint_url from the connection extra
    calls = []
    client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: calls.append(kw["parsed"]["KeyCount"]))
    items = iter_source(f"s3://{BUCKET}/many", s3_client=lambda: client)
    first = next(items)
    assert first.doc_id == "00000.txt" and first.uri == f"s3://{BUCKET}/many/00000.txt" and first.etag
    assert calls == [1000], "only the first page is fetched before the first item"
    rest = list(items)
    assert len(rest) + 1 == 1_234 and calls == [1000, 234]


def test_s3_prefix_is_a_folder_with_nested_keys_and_unsafe_keys_flagged(listing_bucket):
    client = s3_client_factory()()
    items = {i.doc_id: i for i in iter_source(f"s3://{BUCKET}/docs", s3_client=lambda: client)}
    assert set(items) == {"a.md", "nested/deeper/b.txt", "../escape.txt", "/double.md"}  # not docs2/, not hidden
    assert items["../escape.txt"].skip_reason == items["/double.md"].skip_reason == "unsafe_key"
    assert items["../escape.txt"].fetch is None
    assert items["nested/deeper/b.txt"].skip_reason is None and items["nested/deeper/b.txt"].mtime


def test_s3_single_object_and_missing_prefix(listing_bucket, tmp_path):
    client = s3_client_factory()()
    (item,) = iter_source(f"s3://{BUCKET}/single.md", s3_client=lambda: client)
    path = item.local_file(tmp_path / "dl")
    assert item.doc_id == "single.md" and path.read_text() == "one" and path.parent == tmp_path / "dl"
    with pytest.raises(FileNotFoundError, match="nothing at"):
        list(iter_source(f"s3://{BUCKET}/no/such/thing", s3_client=lambda: client))


def test_s3_odd_keys_folder_markers_zero_byte_and_huge_objects(s3_server, tmp_path):
    """Keys with spaces, '#', '%', '?', unicode and a trailing '/' holding bytes never fail the listing or ingest."""
    from collections import Counter

    from ragtrail.core.recorder import Recorder
    from ragtrail.stages.ingest import ingest_source

    put_objects(s3_server.client, "odd", {
        "in/with space #1 100%?.md": "Odd but fine key.", "in/ünïcödé/naïve.txt": "Unicode key.",
        "in/empty.txt": "", "in/marker/": "", "in/a.pdf/": "bytes under a folder-marker key",
        "in/big.txt": "x" * 3000, "in/.hidden.md": "skipped"})
    client = s3_client_factory()()
    skipped = Counter()
    items = {i.doc_id: i for i in iter_source("s3://odd/in", s3_client=lambda: client, skipped=skipped)}
    assert items["a.pdf/"].skip_reason == "not_a_regular_file" and "31 bytes" in items["a.pdf/"].note
    assert skipped == {"folder_marker": 1, "hidden": 1}
    rec = Recorder()
    out = ingest_source("s3://odd/in", tmp_path / "w", recorder=rec, max_doc_bytes=1000, s3_client=lambda: client)
    quarantine = {q["doc_id"]: q["reason"] for q in json.loads((tmp_path / "w" / "quarantine.json").read_text())}
    assert out["docs"] == 2
    assert quarantine == {"a.pdf/": "not_a_regular_file", "big.txt": "too_large", "empty.txt": "empty"}
    assert rec.metrics["skipped_folder_marker"] == 1 and rec.metrics["skipped_hidden"] == 1


def test_local_uris_are_the_files_file_uris(tmp_path):
    """The walk builds each URI from the top's once (no Path per file): the same URI ``Path.as_uri`` gives."""
    import os
    from pathlib import Path

    top = tmp_path / "top dir #1"
    (top / "sub %x").mkdir(parents=True)
    for name in ("a b.md", "c#d.txt", "é ü.md", "sub %x/q?.md", "x%20y.md"):
        (top / name).write_text("x")
    with open(os.fsencode(top) + b"/bad\xff.txt", "w") as fh:  # a name that is not UTF-8
        fh.write("x")
    items = list(iter_local(str(top)))
    assert len(items) == 6
    assert [i.uri for i in items] == [Path(i.path).as_uri() for i in items]
    assert [i.uri for i in list(iter_local(str(top / "a b.md")))] == [(top / "a b.md").as_uri()]  # one file
