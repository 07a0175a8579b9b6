"""PDFs are parsed in a sandboxed child: text comes out, each kind of bad PDF gets its own reason, and a
bomb can neither hang nor kill the caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
import samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtrail.sources.parsing import ParseError, parse_file
from ragtrail.sources.sandbox import SandboxedParser

PDF_REASONS = {"corrupt_pdf", "encrypted_pdf", "no_text_layer", "too_complex", "parse_timeout",
               "parse_memory_limit", "parse_crashed"}


@pytest.fixture(scope="module")
def pdf():
    with SandboxedParser(timeout_s=60) as extractor:
        yield extractor


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.pdf"
    path.write_bytes(samples.bomb_pdf())
    return path


def _one(path, pdf):
    (out,) = list(parse_file(path.name, path, sandbox=pdf))
    return out


def test_text_pdf_pages_are_extracted(tmp_path, pdf):
    path = tmp_path / "two.pdf"
    path.write_bytes(samples.text_pdf("Hello from page one.", "And (parens) on page two."))
    doc = _one(path, pdf)
    assert doc.text == "Hello from page one.\n\nAnd (parens) on page two." and doc.parser == "pypdfium2"


def test_pdf_encrypted_only_against_editing_is_read(tmp_path, pdf):
    """An empty user password (permissions-only encryption) is not a reason to drop the document."""
    path = tmp_path / "owner.pdf"
    path.write_bytes(samples.owner_only_pdf("Readable although encrypted."))
    assert _one(path, pdf).text == "Readable although encrypted."


@pytest.mark.parametrize("make,reason", [
    (samples.encrypted_pdf, "encrypted_pdf"),
    (samples.blank_pdf, "no_text_layer"),
    (samples.corrupt_pdf, "corrupt_pdf"),
    (lambda: b"\x7fELF\x02\x01 definitely not a PDF", "corrupt_pdf"),
    (lambda: b"%PDF-1.7\n" + os.urandom(2000), "corrupt_pdf"),
])
def test_bad_pdfs_get_distinct_reasons(tmp_path, pdf, make, reason):
    path = tmp_path / "bad.pdf"
    path.write_bytes(make())
    out = _one(path, pdf)
    assert isinstance(out, ParseError) and out.reason == reason and out.message


def test_a_pdf_that_runs_too_long_is_killed_and_the_next_one_parses(tmp_path, bomb):
    """Timeout: the child is killed (its PID is gone) and a fresh one serves the next file."""
    good = tmp_path / "good.pdf"
    good.write_bytes(samples.text_pdf("Still alive."))
    with SandboxedParser(timeout_s=1) as pdf:
        assert _one(good, pdf).text == "Still alive."
        pid = pdf._proc.pid
        out = _one(bomb, pdf)
        assert out.reason == "parse_timeout", out.message
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert _one(good, pdf).text == "Still alive." and pdf._proc.pid != pid


SMALL_PARENT = """
import json, sys
from pathlib import Path
from ragtrail.sources.parsing import parse_file
from ragtrail.sources.sandbox import SandboxedParser

bomb, good = Path(sys.argv[1]), Path(sys.argv[2])
with SandboxedParser(timeout_s=120, max_memory_mb=250) as pdf:
    (out,) = list(parse_file(bomb.name, bomb, sandbox=pdf))
    (after,) = list(parse_file(good.name, good, sandbox=pdf))
    print(json.dumps([out.reason, out.message, after.text]))
"""


def test_a_pdf_that_needs_too_much_memory_is_stopped_by_the_limit(tmp_path, bomb):
    """RLIMIT_AS in the child: PDFium's allocator aborts the child when the bomb meets it (SIGABRT, no
    MemoryError); the child's own peak RSS at the budget says why (the memory limit, not a crash), the caller
    carries on. Run from a small parent: a child starts with its parent's RSS high-water mark (see the big-parent test),
    and this one's budget, 250 MB, is below a test worker's RSS."""
    import json

    good = tmp_path / "good.pdf"
    good.write_bytes(samples.text_pdf("Memory left."))
    out = subprocess.run([sys.executable, "-c", SMALL_PARENT, str(bomb), str(good)], capture_output=True, text=True,
                         timeout=300, check=True)
    reason, message, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert reason == "parse_memory_limit" and "more than 250 MB" in message and "exit code -6" in message, message
    assert after == "Memory left."


def test_a_worker_killed_mid_file_is_reported_as_crashed(tmp_path, bomb):
    with SandboxedParser(timeout_s=120) as pdf:
        pdf._start()
        pid = pdf._proc.pid
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        out = _one(bomb, pdf)
        assert out.reason == "parse_crashed" and "-9" in out.message


def _mutations():
    base = samples.text_pdf("Mutate me, please.")
    return st.one_of(
        st.binary(max_size=3000),
        st.binary(max_size=3000).map(lambda b: b"%PDF-1.4\n" + b),
        st.tuples(st.integers(0, len(base) - 1), st.binary(min_size=1, max_size=64)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] + len(t[1]):]),
        st.integers(0, len(base)).map(lambda n: base[:n]),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_mutations())
def test_arbitrary_and_mutated_pdf_bytes_never_escape_the_parser(data, pdf, tmp_path):
    """Property: random bytes and damaged real PDFs give text or a PDF quarantine reason, nothing else."""
    path = tmp_path / "fuzz.pdf"
    path.write_bytes(data)
    out = _one(path, pdf)
    if isinstance(out, ParseError):
        assert out.reason in PDF_REASONS, out.reason
    else:
        assert out.text.strip()


BIG_PARENT = """
import os, signal, sys, threading
from pathlib import Path
from ragtrail.sources.parsing import parse_file
from ragtrail.sources.sandbox import SandboxedParser

ballast = bytearray(700 * 1024 * 1024)  # resident: the child's forked copy starts with this high-water mark
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
bomb = Path(sys.argv[1])
with SandboxedParser(timeout_s=120, max_memory_mb=600) as pdf:
    pdf._start()
    threading.Timer(0.5, os.kill, (pdf._proc.pid, signal.SIGKILL)).start()
    (out,) = list(parse_file(bomb.name, bomb, sandbox=pdf))
    print(out.reason)
"""


def test_a_big_parent_does_not_make_a_killed_child_look_out_of_memory(bomb):
    """exec keeps the RSS high-water mark of the parent's forked copy: a child of a 700 MB parent "peaked" at
    700 MB before it parsed anything; only a peak above the one it started with is the child's own."""
    out = subprocess.run([sys.executable, "-c", BIG_PARENT, str(bomb)], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split()[-1] == "parse_crashed", out.stdout + out.stderr
