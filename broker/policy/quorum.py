"""Is an approval rule met? Distinct people assigned to the sets a rule requires. Pure.

A rule is one or more sets of people, each needing some number of approvals ("1 of
payments-leads AND 1 of sre-oncall"). Each approval counts for one set only, so a person
in both groups cannot satisfy both: the question is whether the approvers can be assigned
to the sets' places, each person to at most one place, each place to a member of its set
(a bipartite matching; rules are small, so augmenting paths are plenty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from broker.scopes.model import Approval


@dataclass(frozen=True)
class PeopleSet:
    """A rule's set, resolved: its name in words, its members now, approvals it needs."""

    name: str
    members: frozenset[str]
    required: int


def resolve(
    approval: Approval, members_of: Callable[[tuple[str, ...], tuple[str, ...]], set[str]]
) -> tuple[PeopleSet, ...]:
    """The rule's sets with their members now (``members_of(approvers, groups)``: the
    configured approvers the names and groups stand for)."""
    return tuple(
        PeopleSet(
            " or ".join((*people.groups, *people.approvers)),
            frozenset(members_of(people.approvers, people.groups)),
            people.required,
        )
        for people in approval.sets
    )


def assignment(sets: Sequence[PeopleSet], people: Iterable[str]) -> dict[int, list[str]]:
    """The most approvals each set can be given by distinct ``people``: set index -> who."""
    places = [index for index, s in enumerate(sets) for _ in range(s.required)]
    taken: dict[int, str] = {}  # place -> person

    def place(person: str, seen: set[int]) -> bool:
        for slot, index in enumerate(places):
            if slot in seen or person not in sets[index].members:
                continue
            seen.add(slot)
            holder = taken.get(slot)
            if holder is None or place(holder, seen):
                taken[slot] = person
                return True
        return False

    for person in sorted(set(people)):
        place(person, set())
    result: dict[int, list[str]] = {index: [] for index in range(len(sets))}
    for slot, person in sorted(taken.items()):
        result[places[slot]].append(person)
    return result


def met(sets: Sequence[PeopleSet], people: Iterable[str]) -> bool:
    """Every set has its approvals from distinct people."""
    given = assignment(sets, people)
    return all(len(given[index]) >= s.required for index, s in enumerate(sets))


def short(sets: Sequence[PeopleSet], people: Iterable[str]) -> int:
    """How many more approvals the sets need, in all."""
    given = assignment(sets, people)
    return sum(max(0, s.required - len(given[index])) for index, s in enumerate(sets))


def missing(sets: Sequence[PeopleSet], people: Iterable[str]) -> list[str]:
    """What is still needed, in words ('1 more of sre-oncall'), empty when met."""
    given = assignment(sets, people)
    return [
        f"{s.required - len(given[index])} more of {s.name}"
        for index, s in enumerate(sets)
        if len(given[index]) < s.required
    ]
