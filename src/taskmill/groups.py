"""The groups a worker serves, and how it shares its claims among them by weight.

A worker serves a list of groups. Given as plain names, they form one queue:
among their due tasks the earliest runs first (web2py's behaviour). Given with
weights ("high:3", or {"high": 3, "low": 1}), each claim is split among the
groups that have due tasks in proportion to their weights, so a flood in one
group cannot starve the others, and the share of a group with nothing due goes
to the rest.

The split is stride scheduling: each group has a pass value that grows by
1/weight for every task claimed from it, and the next task comes from the group
with the lowest pass. That holds across claims too, which matters because a
worker running slow tasks claims one task at a time: "high:3,low:1" then
claims high, low, high, high, high, low, ... not high forever.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from taskmill.errors import ConfigurationError

#: the largest weight accepted; larger ratios are better served by separate workers
MAX_WEIGHT = 1000
_WEIGHTED = re.compile(r"^(?P<name>.+):(?P<weight>\d+)$")


def _check_name(name: str) -> str:
    if not name or "|" in name:
        raise ConfigurationError(f"invalid group name {name!r}: empty or containing '|'")
    return name


def _check_weight(name: str, weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        raise ConfigurationError(
            f"group {name!r}: the weight must be an integer from 1 to {MAX_WEIGHT}, not {weight!r}"
        )
    return weight


def parse_groups(
    spec: Sequence[str] | Mapping[str, int],
) -> tuple[list[str], dict[str, int] | None]:
    """Group names and their weights from a Scheduler/Worker option.

    `spec` is a list of names, where "name:N" gives a weight N (a plain name
    weighs 1), or a dict name -> weight. Returns the names in order and the
    weights, or None for the weights when none was given: plain names keep the
    single earliest-first queue."""
    if isinstance(spec, str):
        raise ConfigurationError("group names must be a list of names, e.g. ['main']")
    if isinstance(spec, Mapping):
        given = {_check_name(str(n)): _check_weight(str(n), w) for n, w in spec.items()}
        if not given:
            raise ConfigurationError("serve at least one group")
        return list(given), given
    names: list[str] = []
    weights: dict[str, int] = {}
    weighted = False
    for item in spec:
        if not isinstance(item, str):
            raise ConfigurationError(f"group names must be strings, not {item!r}")
        match = _WEIGHTED.match(item)
        if match:
            name, weight = match["name"], _check_weight(match["name"], int(match["weight"]))
            weighted = True
        else:
            name, weight = item, 1
        _check_name(name)
        if name in weights:
            raise ConfigurationError(f"group {name!r} is listed twice")
        names.append(name)
        weights[name] = weight
    if not names:
        raise ConfigurationError("serve at least one group")
    return names, (weights if weighted else None)


def split_cli_groups(values: Iterable[str]) -> list[str]:
    """The -g values of the command line: each may list weighted groups separated by
    commas ("high:3,low:1"). A value is split only when every part carries a
    weight, so a plain group name with a comma in it stays one name."""
    items: list[str] = []
    for value in values:
        parts = value.split(",")
        if len(parts) > 1 and all(_WEIGHTED.match(part) for part in parts):
            items.extend(parts)
        else:
            items.append(value)
    return items


def format_groups(names: Sequence[str], weights: Mapping[str, int] | None) -> list[str]:
    """The inverse of parse_groups, for passing groups on a command line."""
    if weights is None:
        return list(names)
    return [f"{name}:{weights[name]}" for name in names]


class GroupShares:
    """Stride scheduling of claims among weighted groups (one per worker)."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        self.weights = dict(weights)
        self.order = list(weights)
        self.passes = dict.fromkeys(self.order, 0.0)

    def plan(self, limit: int, groups: Sequence[str]) -> list[tuple[str, int]]:
        """How many of `limit` tasks to take from each of `groups`, in the order
        the stride picks them first (nothing is charged yet)."""
        passes = {group: self.passes[group] for group in groups}
        counts: dict[str, int] = {}
        for _ in range(limit):
            group = min(groups, key=lambda g: (passes[g], self.order.index(g)))
            passes[group] += 1.0 / self.weights[group]
            counts[group] = counts.get(group, 0) + 1
        return list(counts.items())

    def charge(self, group: str, claimed: int) -> None:
        self.passes[group] += claimed / self.weights[group]

    def settle(self, idle: Iterable[str]) -> None:
        """Groups that had nothing to give must not bank credit for later (they
        would then take whole claims while the others wait): they catch up with
        the busiest pass of the groups that had work."""
        idle = set(idle)
        busy = [self.passes[g] for g in self.order if g not in idle]
        if busy:
            floor = min(busy)
            for group in idle:
                self.passes[group] = max(self.passes[group], floor)
        low = min(self.passes.values())
        for group in self.order:  # keep the numbers small over a long life
            self.passes[group] -= low
