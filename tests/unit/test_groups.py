"""Groups a worker serves, with optional weights: parsing and the stride split."""

from __future__ import annotations

import pytest

from taskmill import Scheduler
from taskmill.errors import ConfigurationError
from taskmill.groups import GroupShares, format_groups, parse_groups, split_cli_groups


def test_plain_names_have_no_weights() -> None:
    assert parse_groups(["main", "slow"]) == (["main", "slow"], None)


def test_name_colon_number_gives_a_weight_and_plain_names_weigh_one() -> None:
    assert parse_groups(["high:3", "low"]) == (["high", "low"], {"high": 3, "low": 1})


def test_a_dict_gives_names_and_weights() -> None:
    assert parse_groups({"high": 3, "low": 1}) == (["high", "low"], {"high": 3, "low": 1})


def test_a_colon_without_a_number_is_part_of_the_name() -> None:
    assert parse_groups(["mail:outbox"]) == (["mail:outbox"], None)


@pytest.mark.parametrize(
    "spec", [["high:0"], ["high:1001"], {"high": 0}, {"high": True}, ["a|b"], ["a", "a:2"], []]
)
def test_bad_group_specs_are_refused(spec: object) -> None:
    with pytest.raises(ConfigurationError):
        parse_groups(spec)  # type: ignore[arg-type]


def test_cli_value_with_weighted_parts_is_split_at_commas() -> None:
    assert split_cli_groups(["high:3,low:1", "bulk"]) == ["high:3", "low:1", "bulk"]


def test_cli_value_with_a_comma_in_a_plain_name_stays_one_group() -> None:
    assert split_cli_groups(["a,b"]) == ["a,b"]


def test_format_groups_round_trips() -> None:
    names, weights = parse_groups(["high:3", "low"])
    assert parse_groups(format_groups(names, weights)) == (names, weights)
    assert format_groups(["main"], None) == ["main"]


def test_scheduler_takes_weighted_groups() -> None:
    sched = Scheduler("sqlite://", group_names=["high:3", "low"])
    assert (sched.group_names, sched.group_weights) == (["high", "low"], {"high": 3, "low": 1})
    sched.store.dispose()


def test_scheduler_refuses_a_zero_weight() -> None:
    with pytest.raises(ConfigurationError, match="weight"):
        Scheduler("sqlite://", group_names=["high:0"])


def picks(shares: GroupShares, claims: int, groups: list[str]) -> list[str]:
    sequence: list[str] = []
    for _ in range(claims):
        ((group, count),) = shares.plan(1, groups)
        shares.charge(group, count)
        shares.settle([])
        sequence.append(group)
    return sequence


def test_stride_follows_the_weights_one_task_at_a_time() -> None:
    sequence = picks(GroupShares({"high": 3, "low": 1}), 400, ["high", "low"])
    assert (sequence.count("high"), sequence.count("low")) == (300, 100)
    assert "low" in sequence[:4]  # no group waits for the other's whole share


def test_plan_splits_a_batch_by_weight() -> None:
    shares = GroupShares({"a": 5, "b": 3, "c": 2})
    assert dict(shares.plan(10, ["a", "b", "c"])) == {"a": 5, "b": 3, "c": 2}
    assert dict(shares.plan(10, ["b", "c"])) == {"b": 6, "c": 4}
