"""Which deployments a device runs: IoT Hub's priority and layering rule, in one place.

Among the deployments whose target condition matches a device:

* the **base** (standard) deployment with the highest priority applies; a tie goes to the most
  recently created one;
* every matching **layered** deployment with a priority higher than that base's merges on top
  (all of them when no base applies); on a module of the same name the higher precedence wins.

So a base deployment keeps another deployment from applying on a device both target when it
comes first: above a layered one by priority (ties included), above a base one by precedence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


@dataclass(frozen=True, order=True)
class Rank:
    """A deployment's place in IoT Hub's order: priority, then creation time (ISO 8601 UTC), then
    ``seq`` where a backend can create two in the same instant. ``layered`` does not order."""

    priority: int
    created: str
    seq: int = 0


class Ranked(Protocol):
    @property
    def rank(self) -> Rank: ...

    @property
    def layered(self) -> bool: ...


D = TypeVar("D", bound=Ranked)


@dataclass(frozen=True)
class Assignment(Generic[D]):
    """What the hub does for one device."""

    targeted: tuple[D, ...]  # descending precedence
    base: D | None
    layers: tuple[D, ...]  # ascending precedence: later ones win a module of the same name

    @property
    def applied(self) -> tuple[D, ...]:
        return ((self.base,) if self.base is not None else ()) + self.layers


def by_precedence(deployments: Sequence[D]) -> tuple[D, ...]:
    """Highest precedence first."""
    return tuple(sorted(deployments, key=lambda d: d.rank, reverse=True))


def assign(targeted: Sequence[D]) -> Assignment[D]:
    """The assignment of a device that ``targeted`` (in descending precedence) all target."""
    base = next((d for d in targeted if not d.layered), None)
    floor = base.rank.priority if base is not None else None
    layers = tuple(reversed([d for d in targeted if d.layered and (floor is None or d.rank.priority > floor)]))
    return Assignment(tuple(targeted), base, layers)


def keeps_from_applying(base: Rank, other: Rank, other_layered: bool) -> bool:
    """Whether base deployment ``base`` keeps ``other`` from applying on a device both target."""
    if other_layered:
        return base.priority >= other.priority
    return base > other
