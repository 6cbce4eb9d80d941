"""The suite-wide secret scan fails a run that leaks, and names where, never the secret.

Each case runs pytest in a subprocess (pytester) with the scan plugin, so the planted
leaks fail that inner run and not this suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "PLANTEDsecret0123456789abcdef"
ELSEWHERE = "ELSEWHEREsecret9876543210fedcba"

LEAKY_TESTS = f'''
import logging
from pathlib import Path

from broker.audit.recorder import AuditRecorder
from broker.issuers.base import IssuedCredential
from broker.store.sql import SqlStore


def issue() -> IssuedCredential:
    return IssuedCredential(
        backend="aws",
        expires_at=0.0,
        secret={{"session_token": "{PLANTED}"}},
        public={{"access_key_id": "ASIAPUBLIC0001"}},
    )


def test_logs_a_secret() -> None:
    credential = issue()
    note = credential.secret["session_token"]
    logging.getLogger("broker.leaky").info("issued %s", "ASIA", extra={{"note": note}})


def test_audits_a_secret(tmp_path: Path) -> None:
    credential = issue()
    store = SqlStore.from_url(f"sqlite:///{{tmp_path / 'broker.db'}}")
    note = credential.secret["session_token"]
    AuditRecorder(store).record("issue", "issued", "agent:x", note=note)
    store.close()


def test_a_subprocess_streams_a_secret(tmp_path: Path, secret_scan) -> None:
    stream = tmp_path / "stream.jsonl"
    stream.write_text('{{"seq": 1, "details": {{"x": "{ELSEWHERE}"}}}}\\n')
    body = {{"access_key_id": "ASIAPUBLIC0001", "secret_access_key": "{ELSEWHERE}"}}
    secret_scan.add_credentials(body, "a credential a subprocess broker issued")
    secret_scan.watch(stream)


def test_clean() -> None:
    credential = issue()
    logging.getLogger("broker.clean").info("issued %s", credential.public["access_key_id"])
'''

CLEAN_TESTS = f'''
import logging

from broker.issuers.base import IssuedCredential


def test_clean() -> None:
    credential = IssuedCredential(
        backend="vault",
        expires_at=0.0,
        secret={{"token": "{PLANTED}"}},
        public={{"accessor": "acc-1"}},
    )
    logging.getLogger("broker.clean").warning("issued accessor %s", credential.public["accessor"])


def test_public_ids_are_never_secrets(secret_scan) -> None:
    body = {{"access_key_id": "ASIAPUBLIC0002", "secret_access_key": "{ELSEWHERE}"}}
    secret_scan.add_credentials(body, "a credential from a replica")
    IssuedCredential(
        backend="aws", expires_at=0.0, secret={{}}, public={{"access_key_id": "ASIAPUBLIC0003"}}
    )
    secret_scan.add_secret("ASIAPUBLIC0003", "registered by mistake")
    logging.getLogger("broker.clean").warning("ids %s %s", "ASIAPUBLIC0002", "ASIAPUBLIC0003")
'''


@pytest.fixture()
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest('pytest_plugins = ["tests.fixtures.secret_scan"]\n')
    return pytester


def test_a_planted_secret_fails_the_run_and_is_never_printed(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_leaks=LEAKY_TESTS)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=4)  # every test passed: the scan alone fails the run
    assert "3 log line(s) or audit record(s) contain a secret" in output
    assert "test_leaks.py::test_logs_a_secret: log line from " in output
    source = (inner.path / "test_leaks.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if "broker.leaky" in text)
    assert f"test_leaks.py:{line} (logger broker.leaky)" in output  # the logging call
    assert "test_leaks.py::test_audits_a_secret: audit record 1 (issue issued)" in output
    assert (
        "test_leaks.py::test_a_subprocess_streams_a_secret: stream.jsonl:1: contains the "
        "secret_access_key of a credential a subprocess broker issued (sha256 "
    ) in output
    assert "contains the session_token of a credential from aws (sha256 " in output
    assert "test_clean" not in output.split("secret scan")[-1]
    assert PLANTED not in output and ELSEWHERE not in output


def test_a_run_without_leaks_passes(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_clean=CLEAN_TESTS)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["secret scan: 3 secret(s), 2 log line(s)*no secret found"])
