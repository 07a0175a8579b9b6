"""The BM25 encoder: one tokenisation for chunks and questions, stop words and stems, stable token ids."""

from __future__ import annotations

import subprocess
import sys

from ragtrail.store.sparse import AVG_LEN, CONFIG, encoder, encoder_for

TEXT = ("Running pg_dump runs a consistent backup; the pg_restore tool reads the archive. "
        "ERROR 42P01: relation \"orders\" does not exist.")


def test_a_question_is_tokenised_exactly_as_a_chunk_is():
    bm25 = encoder(CONFIG)
    [doc], [query] = bm25.documents([TEXT]), bm25.queries([TEXT])
    assert sorted(query.indices) == sorted(doc.indices) and len(doc.indices) > 8
    assert set(query.values) == {1.0}  # the question side: each distinct term once; IDF comes from the store
    # Stemming: "running"/"runs" meet "run"; stop words alone give no terms.
    [run], [running] = bm25.queries(["run"]), bm25.queries(["running runs"])
    assert run.indices == running.indices and set(run.indices) <= set(doc.indices)
    assert bm25.queries(["the and of a is"])[0].indices == [] and bm25.queries([""])[0].indices == []


def test_document_weights_saturate_with_term_frequency_and_normalise_by_length():
    bm25 = encoder(CONFIG)
    [once], [thrice] = bm25.documents(["vacuum"]), bm25.documents(["vacuum vacuum vacuum"])
    assert once.indices == thrice.indices and once.values[0] < thrice.values[0] < 2.2 * once.values[0]
    filler = " ".join(f"word{i}" for i in range(int(AVG_LEN) * 3))
    [long_doc] = bm25.documents([f"vacuum {filler}"])
    weight = dict(zip(long_doc.indices, long_doc.values, strict=True))[once.indices[0]]
    assert weight < once.values[0]  # a term in a long chunk weighs less (b = 0.75)


def test_token_ids_are_stable_across_processes_and_follow_the_collections_config():
    code = ("from ragtrail.store.sparse import encoder;"
            "print(encoder().queries(['pg_restore archive'])[0].indices)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(encoder(CONFIG).queries(["pg_restore archive"])[0].indices)
    assert encoder_for({"sparse": dict(CONFIG)}) is encoder(CONFIG)
    assert encoder_for({}) is encoder(CONFIG)  # a collection without the key: today's config


def test_non_latin_and_huge_texts_encode():
    bm25 = encoder(CONFIG)
    assert bm25.queries(["резервное копирование базы данных"])[0].indices
    assert bm25.queries(["データベースのバックアップ"])[0].indices
    huge = " ".join(f"term{i}" for i in range(20_000))  # ~160 KB
    assert len(bm25.queries([huge])[0].indices) == 20_000
