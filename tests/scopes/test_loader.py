"""Structural checks of scope files: every problem, with file:line:column."""

from __future__ import annotations

from pathlib import Path

from broker.scopes.loader import load_scope_file
from broker.scopes.registry import load_scope_set
from tests.scopes.factory import VALID, lint_context, load_ok, scope_data, write_scope

EXAMPLES = Path(__file__).resolve().parents[2] / "scopes"


def reasons(path: Path) -> list[str]:
    _, problems = load_scope_file(path)
    return [str(p) for p in problems]


def test_valid_scope_loads_into_the_model(tmp_path: Path) -> None:
    loaded = load_ok(write_scope(tmp_path, scope_data()))
    scope = loaded.scope
    assert scope.service == "shop"
    assert scope.environments["prod"].aws is not None
    assert scope.environments["prod"].aws.regions == ("us-east-1", "eu-west-1")
    assert scope.tiers["write"].ttl_seconds == 1800
    assert scope.tiers["delete"].approval is not None
    assert scope.tiers["delete"].approval.delay_seconds == 600
    assert [s.actions for s in scope.statements("write")][-1] == ("s3:PutObject",)


def test_the_example_scopes_are_valid() -> None:
    result = load_scope_set(EXAMPLES, lint_context())
    assert result.problems == []
    assert set(result.scope_set.scopes) == {"payments", "ledger", "deploy"}


def test_unknown_key_is_reported_with_its_position(tmp_path: Path) -> None:
    text = (
        (EXAMPLES / "deploy-pipeline.yaml")
        .read_text()
        .replace("  owners: [team-platform]", "  owners: [team-platform]\n  ownerz: nobody")
    )
    path = write_scope(tmp_path, text)
    problems = reasons(path)
    line = text.splitlines().index("  ownerz: nobody") + 1
    assert problems == [f"{path}:{line}:3: metadata: unknown key 'ownerz' (did you mean 'owners'?)"]


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    data = scope_data()
    data["metadata"]["colour"] = "blue"
    data["environments"]["prod"]["aws"]["account"] = 111111111111
    data["environments"]["prod"]["aws"]["regions"] = ["us-east-1", "mars-north-1x"]
    data["tiers"]["read"]["ttl"] = "soon"
    data["tiers"]["write"]["aws"][0]["resources"] = ["arn:aws:s3:::shop-${stage}-data/*"]
    problems = reasons(write_scope(tmp_path, data))
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "unknown key 'colour'" in joined
    assert "aws.account must be a string (a quoted string of 12 digits" in joined
    assert "'mars-north-1x' is invalid" in joined
    assert "tier 'read' ttl must be a duration" in joined
    assert "unknown placeholder '${stage}'" in joined


def test_wrong_types_are_reported(tmp_path: Path) -> None:
    data = scope_data(requesters={"subject": "x"})
    data["tiers"]["write"]["max_resources"] = "three"
    data["tiers"]["write"]["approval"]["allow_slack_approval"] = "yes please"
    problems = "\n".join(reasons(write_scope(tmp_path, data)))
    assert "requesters must be a list" in problems
    assert "max_resources must be an integer" in problems
    assert "allow_slack_approval must be true or false" in problems


def test_escalated_tiers_need_an_approval_block(tmp_path: Path) -> None:
    data = scope_data()
    del data["tiers"]["write"]["approval"]
    problems = reasons(write_scope(tmp_path, data))
    assert any("tier 'write' needs an 'approval' block" in p for p in problems)


def test_read_takes_no_approval(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["read"]["approval"] = {"approvers": ["alice"]}
    assert any("takes no approval" in p for p in reasons(write_scope(tmp_path, data)))


def test_requester_needs_subject_or_claims(tmp_path: Path) -> None:
    data = scope_data(requesters=[{"subject": "a", "claims": {"sub": "b"}}, {}])
    problems = reasons(write_scope(tmp_path, data))
    assert sum("exactly one of 'subject' or 'claims'" in p for p in problems) == 2


def test_wrong_api_version_and_kind(tmp_path: Path) -> None:
    data = scope_data(apiVersion="broker/v2", kind="Policy")
    problems = "\n".join(reasons(write_scope(tmp_path, data)))
    assert "apiVersion must be 'broker/v1'" in problems
    assert "kind must be 'Scope'" in problems


def test_missing_top_level_keys(tmp_path: Path) -> None:
    problems = reasons(write_scope(tmp_path, {"apiVersion": "broker/v1", "kind": "Scope"}))
    for key in ("metadata", "requesters", "environments", "tiers"):
        assert any(f"missing required key '{key}'" in p for p in problems), key


def test_duplicate_services_across_files(tmp_path: Path) -> None:
    write_scope(tmp_path, scope_data(), "a.yaml")
    second = write_scope(tmp_path, scope_data(), "b.yaml")
    result = load_scope_set(tmp_path, lint_context())
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.path == str(second)
    assert problem.line == 4  # metadata.service in yaml.safe_dump's layout
    assert "duplicate service 'shop': already defined in" in problem.reason
    assert list(result.scope_set.scopes) == ["shop"]


def test_freezes_are_parsed_with_time_zones(tmp_path: Path) -> None:
    data = scope_data(
        freezes=[
            {
                "name": "holidays",
                "start": "2026-12-20T00:00",
                "end": "2027-01-04T00:00",
                "timezone": "Europe/Berlin",
            },
            {
                "name": "nights",
                "recurring": {"days": ["mon", "fri"], "start": "22:00", "end": "06:00"},
                "timezone": "America/New_York",
                "tiers": ["delete"],
            },
        ]
    )
    scope = load_ok(write_scope(tmp_path, data)).scope
    holidays, nights = scope.freezes
    assert holidays.start is not None and str(holidays.start.tzinfo) == "Europe/Berlin"
    assert holidays.tiers == ("write", "delete")
    assert nights.days == (0, 4) and nights.tiers == ("delete",)


def test_bad_freezes(tmp_path: Path) -> None:
    data = scope_data(
        freezes=[
            {"name": "a", "timezone": "Mars/Olympus", "start": "2026-01-02", "end": "2026-01-03"},
            {"name": "b", "timezone": "UTC", "start": "2026-01-03", "end": "2026-01-02"},
            {"name": "c", "timezone": "UTC"},
            {
                "name": "d",
                "timezone": "UTC",
                "recurring": {"days": ["someday"], "start": "25:00", "end": "01:00"},
            },
        ]
    )
    problems = "\n".join(reasons(write_scope(tmp_path, data)))
    assert "'Mars/Olympus' is not a known time zone" in problems
    assert "end must be after its start" in problems
    assert "needs either start and end, or recurring" in problems
    assert "'someday' is invalid" in problems
    assert "recurring.start" in problems


def test_rate_limits_and_durations(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["write"]["rate_limit"] = "10/h"
    data["tiers"]["delete"]["rate_limit"] = "2/d"
    scope = load_ok(write_scope(tmp_path, data)).scope
    assert scope.tiers["write"].rate_limit is not None
    assert (scope.tiers["write"].rate_limit.count, scope.tiers["write"].rate_limit.per_seconds) == (
        10,
        3600,
    )
    assert str(scope.tiers["delete"].rate_limit) == "2/d"
    data["tiers"]["delete"]["rate_limit"] = "lots"
    assert any("rate_limit" in p for p in reasons(write_scope(tmp_path, data)))


def test_vault_paths_refuse_dot_dot_and_inner_stars(tmp_path: Path) -> None:
    data = scope_data()
    data["environments"]["prod"]["vault"]["kv"]["paths"] = ["shop/../other/*", "shop/*/x"]
    problems = reasons(write_scope(tmp_path, data))
    assert any("'..' is not allowed" in p for p in problems)
    assert any("'shop/*/x' is invalid" in p for p in problems)


def test_valid_scope_copy_is_untouched() -> None:
    # The factory hands out copies: tests cannot leak changes into each other.
    assert VALID["metadata"]["service"] == "shop"


def test_empty_claim_patterns_are_refused(tmp_path: Path) -> None:
    data = scope_data(requesters=[{"claims": {"iss": ""}}])
    problems = reasons(write_scope(tmp_path, data))
    assert any("claim 'iss' must not be empty" in p for p in problems)


def test_vault_paths_take_only_the_env_placeholder(tmp_path: Path) -> None:
    data = scope_data()
    data["environments"]["prod"]["vault"]["kv"]["paths"] = ["shop/${region}/*"]
    problems = reasons(write_scope(tmp_path, data))
    assert any("unknown placeholder '${region}' (known: ${env})" in p for p in problems)


def test_intent_rules_load_into_the_tiers(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["write"]["intent"] = "required"
    data["tiers"]["delete"].update(intent="required", max_destructive=3)
    scope = load_ok(write_scope(tmp_path, data)).scope
    assert scope.tiers["write"].intent == "required"
    assert scope.tiers["delete"].max_destructive == 3
    assert scope.tiers["read"].intent == "optional"
    assert scope.tiers["read"].max_destructive is None


def test_intent_rules_are_refused_where_they_cannot_apply(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["read"]["intent"] = "required"
    data["tiers"]["write"]["max_destructive"] = 2
    data["tiers"]["delete"]["intent"] = "always"
    problems = "\n".join(reasons(write_scope(tmp_path, data)))
    assert "tier 'read' is granted at once: 'intent: required' applies to write" in problems
    assert "tier 'write' never receives a destructive intent" in problems
    assert "'always' is invalid: required or optional" in problems


def test_max_destructive_must_be_a_count(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["delete"]["max_destructive"] = -1
    assert any(
        "max_destructive must be between 0 and 10000" in r
        for r in reasons(write_scope(tmp_path, data))
    )


def test_an_iss_claim_names_one_issuer(tmp_path: Path) -> None:
    data = scope_data()
    data["requesters"] = [{"claims": {"iss": "https://*.example.com", "sub": "x"}}]
    problems = reasons(write_scope(tmp_path, data))
    assert any("claim 'iss' is a pattern" in p for p in problems), problems
