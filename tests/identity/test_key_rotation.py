"""Rotating the agent-signing key: new tokens are signed with the new key, tokens the old
key signed stay valid until they can no longer be (identity.local.max_ttl after the
rotation), and a running broker notices a rotation on disk by itself."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from broker.config import IdentitySettings, LocalIssuer
from broker.errors import ConfigError, Unauthenticated
from broker.identity.mint import mint_agent_token
from broker.identity.verifier import KEY_REREAD_SECONDS, TokenVerifier
from broker.keys import AGENT_KEY_FILE, RETIRED_KEYS_FILE, load_keys, rotate_agent_key
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.cli import run_cli

DAY = 24 * 3600
LOCAL = LocalIssuer()
IDENTITY = IdentitySettings(local=LOCAL)


def test_tokens_of_a_retired_key_are_accepted_until_they_must_have_expired(
    tmp_path: Path,
) -> None:
    now = time.time()
    before = load_keys(tmp_path)
    old_token = mint_agent_token(before, LOCAL, "bot", 3600, now=now)
    new_kid, retired = rotate_agent_key(tmp_path, DAY, now)
    after = load_keys(tmp_path)
    assert after.agent_key_id == new_kid != before.agent_key_id
    assert retired.key_id == before.agent_key_id and retired.verify_until == now + DAY
    assert after.link_secret == before.link_secret  # only the signing key changes
    clock = [now]
    verifier = TokenVerifier(IDENTITY, after, clock=lambda: clock[0])
    assert verifier.verify(old_token).subject == "agent:bot"
    assert verifier.verify(mint_agent_token(after, LOCAL, "bot", 3600, now=now)).subject
    # A token the old key signed with an exp beyond its retirement window (it could not
    # have been minted under max_ttl): refused once the window has passed.
    forged_late = jwt.encode(
        {
            "iss": LOCAL.issuer,
            "aud": LOCAL.audience,
            "sub": "agent:bot",
            "iat": int(now),
            "exp": int(now + 3 * DAY),
        },
        before.agent_signing_key,
        algorithm="EdDSA",
        headers={"kid": before.agent_key_id},
    )
    clock[0] = now + DAY + 1
    with pytest.raises(Unauthenticated, match="unknown signing key"):
        TokenVerifier(IDENTITY, after, clock=lambda: clock[0]).verify(forged_late)


def test_rotating_again_keeps_every_key_still_in_its_window_and_drops_the_rest(
    tmp_path: Path,
) -> None:
    now = time.time()
    first = load_keys(tmp_path).agent_key_id
    second, _ = rotate_agent_key(tmp_path, DAY, now)
    third, _ = rotate_agent_key(tmp_path, DAY, now + 3600)
    keys = load_keys(tmp_path)
    assert keys.agent_key_id == third
    assert [r.key_id for r in keys.retired] == [first, second]
    rotate_agent_key(tmp_path, DAY, now + DAY + 1800)  # past the first key's window only
    assert [r.key_id for r in load_keys(tmp_path).retired] == [second, third]
    for name in (AGENT_KEY_FILE, RETIRED_KEYS_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("# kid=", "# kid=X", 1), "does not match the key below it"),
        (lambda t: t.replace("verify-until=", "verify-until=soon", 1), "not a retired key"),
        (lambda t: t + "stray text\n", "unexpected text"),
        (lambda t: t.rsplit("-----END", 1)[0], "incomplete"),
        (lambda t: "\n".join(x for x in t.splitlines() if not x.startswith("# kid")), "without"),
    ],
    ids=["kid", "time", "stray", "truncated", "headerless"],
)
def test_a_damaged_retired_keys_file_is_refused_naming_the_problem(
    tmp_path: Path, change: object, problem: str
) -> None:
    rotate_agent_key(tmp_path, DAY, time.time())
    path = tmp_path / RETIRED_KEYS_FILE
    path.write_text(change(path.read_text()))  # type: ignore[operator]
    with pytest.raises(ConfigError, match=problem):
        load_keys(tmp_path)


def test_a_running_broker_accepts_tokens_of_a_key_rotated_on_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made: Broker = make_broker(tmp_path)
    try:
        services = made.services
        old_token = made.token("payments-copilot")
        config = made.write_config(tmp_path / "broker.yaml")
        code, out, err = run_cli(capsys, "token", "rotate-key", "--config", str(config))
        assert code == 0, err
        assert "are accepted until" in out
        new_token = run_cli(
            capsys, "token", "mint", "--config", str(config), "--agent", "payments-copilot"
        ).out.strip()
        assert jwt.get_unverified_header(new_token)["kid"] != services.keys.agent_key_id
        for token in (old_token, new_token):
            response = made.client.get("/v1/scopes", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.json
        # The new token made the broker read its keys; a flood of made-up kids reads them
        # no more until KEY_REREAD_SECONDS have passed, then once.
        reads: list[int] = []
        reread = services.verifier.reload_keys
        assert reread is not None

        def counted() -> Any:
            reads.append(1)
            return reread()

        services.verifier.reload_keys = counted
        local = services.settings.identity.local

        def made_up(n: int) -> int:
            forged = jwt.encode(
                {
                    "sub": "agent:x",
                    "iss": local.issuer,
                    "aud": local.audience,
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 600,
                },
                services.keys.agent_signing_key,
                algorithm="EdDSA",
                headers={"kid": f"made-up-{n}"},
            )
            headers = {"Authorization": f"Bearer {forged}"}
            return int(made.client.get("/v1/scopes", headers=headers).status_code)

        assert [made_up(n) for n in range(5)] == [401] * 5 and reads == []
        made.clock.advance(KEY_REREAD_SECONDS + 1)
        assert [made_up(n) for n in range(5, 10)] == [401] * 5 and reads == [1]
    finally:
        made.services.close()
    assert os.path.exists(tmp_path / "state" / RETIRED_KEYS_FILE)
