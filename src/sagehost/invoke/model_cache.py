"""Which models each instance of a multi-model variant holds, and which to evict: pure
bookkeeping, no I/O. :mod:`sagehost.invoke.multimodel` does the calls it decides on.

Every loaded copy of a model is charged against its instance's memory budget from the moment
its load is planned until its unload has finished, so two loads planned at once never share
the same free memory. A copy may be evicted only when it is loaded, idle (no call in flight on
it) and its model is not pinned; among those, the least recently used goes first.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class CopyState(enum.Enum):
    LOADING = "Loading"
    LOADED = "Loaded"
    UNLOADING = "Unloading"


@dataclass(slots=True)
class Copy:
    """One model on one instance."""

    target: str
    charge: int  # bytes against the instance's memory budget
    state: CopyState
    in_use: int = 0  # calls in flight on this copy
    last_used: int = 0  # a tick of the cache's logical clock


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ready instance a model could be loaded on, and how busy it is."""

    instance_id: str
    outstanding: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a load goes: the instance, and the models to unload there first (least recently
    used first). Both are already recorded: the load as LOADING, the victims as UNLOADING."""

    instance_id: str
    victims: tuple[str, ...]


class ModelCache:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._copies: dict[str, dict[str, Copy]] = {}
        self._pins: set[str] = set()
        self._tick = 0

    # -- queries ------------------------------------------------------------------------------

    def holders(self, target: str) -> list[str]:
        """Instances on which ``target`` is loaded and may take calls."""
        return [
            instance_id
            for instance_id, copies in self._copies.items()
            if (copy := copies.get(target)) is not None and copy.state is CopyState.LOADED
        ]

    def copy(self, instance_id: str, target: str) -> Copy | None:
        return self._copies.get(instance_id, {}).get(target)

    def copies(self, instance_id: str) -> list[Copy]:
        """The instance's copies, least recently used first."""
        return sorted(self._copies.get(instance_id, {}).values(), key=lambda c: c.last_used)

    def instances(self) -> list[str]:
        return list(self._copies)

    def used(self, instance_id: str) -> int:
        return sum(c.charge for c in self._copies.get(instance_id, {}).values())

    def pinned(self, target: str) -> bool:
        return target in self._pins

    @property
    def pins(self) -> frozenset[str]:
        return frozenset(self._pins)

    # -- placement ----------------------------------------------------------------------------

    def place(self, target: str, charge: int, candidates: Iterable[Candidate]) -> Placement | None:
        """Choose an instance to load ``target`` on and record the plan, or return None when
        no candidate can make room.

        An instance with room already wins (the least busy, then the one with most room);
        otherwise the instance whose evictions are the least recently used, so the copies that
        go are the oldest of the whole variant. Candidates already holding ``target`` in any
        state are skipped.
        """
        if charge > self.budget:
            return None
        best: tuple[tuple[int, int, int], str, list[str]] | None = None
        for candidate in candidates:
            instance_id = candidate.instance_id
            if self.copy(instance_id, target) is not None:
                continue
            free = self.budget - self.used(instance_id)
            victims: list[str] = []
            if free >= charge:
                rank = (0, candidate.outstanding, -free)
            else:
                found = self.victims(instance_id, charge - free)
                if found is None:
                    continue
                victims = found
                newest = max(self._copies[instance_id][v].last_used for v in victims)
                rank = (1, newest, candidate.outstanding)
            if best is None or rank < best[0]:
                best = (rank, instance_id, victims)
        if best is None:
            return None
        _, instance_id, chosen = best
        for victim in chosen:
            self.unloading(instance_id, victim)
        self.reserve(instance_id, target, charge)
        return Placement(instance_id, tuple(chosen))

    def victims(self, instance_id: str, need: int) -> list[str] | None:
        """The least recently used evictable copies whose charges add up to ``need`` bytes, or
        None if evicting everything evictable would not free that much."""
        chosen: list[str] = []
        freed = 0
        for copy in self.copies(instance_id):
            if freed >= need:
                break
            if self._evictable(copy):
                chosen.append(copy.target)
                freed += copy.charge
        return chosen if freed >= need else None

    def spare(self, target: str, charge: int, candidates: Iterable[Candidate]) -> str | None:
        """An instance that could take another copy of ``target`` without evicting anything
        (the least busy), to spread a hot model; None if there is none."""
        best: tuple[int, str] | None = None
        for candidate in candidates:
            instance_id = candidate.instance_id
            if self.copy(instance_id, target) is not None:
                continue
            if self.budget - self.used(instance_id) < charge:
                continue
            if best is None or candidate.outstanding < best[0]:
                best = (candidate.outstanding, instance_id)
        return None if best is None else best[1]

    def room_later(self, instance_id: str, charge: int) -> bool:
        """Whether the instance will have room for ``charge`` bytes once its calls end and its
        unloads finish: only pinned models never leave."""
        pinned = sum(c.charge for c in self.copies(instance_id) if c.target in self._pins)
        return self.budget - pinned >= charge

    def _evictable(self, copy: Copy) -> bool:
        return copy.state is CopyState.LOADED and copy.in_use == 0 and copy.target not in self._pins

    # -- changes ------------------------------------------------------------------------------

    def reserve(self, instance_id: str, target: str, charge: int) -> Copy:
        copy = Copy(target, charge, CopyState.LOADING, last_used=self._next_tick())
        self._copies.setdefault(instance_id, {})[target] = copy
        return copy

    def loaded(self, instance_id: str, target: str) -> None:
        copy = self._copies[instance_id][target]
        copy.state = CopyState.LOADED
        copy.last_used = self._next_tick()

    def unloading(self, instance_id: str, target: str) -> None:
        self._copies[instance_id][target].state = CopyState.UNLOADING

    def remove(self, instance_id: str, target: str) -> Copy | None:
        """Forget a copy (unloaded, failed to load, or lost with its instance)."""
        copies = self._copies.get(instance_id)
        if copies is None:
            return None
        copy = copies.pop(target, None)
        if not copies:
            del self._copies[instance_id]
        return copy

    def current(self, instance_id: str, copy: Copy) -> bool:
        """Whether ``copy`` is still the instance's copy of its model: a copy declared lost and
        loaded again is a new object."""
        return self.copy(instance_id, copy.target) is copy

    def discard(self, instance_id: str, copy: Copy) -> bool:
        """Forget ``copy`` if it is still current; False if it was already gone (or replaced)."""
        if not self.current(instance_id, copy):
            return False
        self.remove(instance_id, copy.target)
        return True

    def begin_call(self, instance_id: str, target: str) -> Copy:
        """One call more on the instance's copy of ``target``: hand the copy back to
        :meth:`end_call`, so the call ends on the copy it began on."""
        copy = self._copies[instance_id][target]
        copy.in_use += 1
        copy.last_used = self._next_tick()
        return copy

    def end_call(self, instance_id: str, copy: Copy) -> bool:
        """One call fewer on ``copy``; True if it is still current and now idle."""
        copy.in_use -= 1
        return copy.in_use == 0 and self.current(instance_id, copy)

    def pin(self, target: str) -> None:
        self._pins.add(target)

    def unpin(self, target: str) -> bool:
        """False if ``target`` was not pinned."""
        if target not in self._pins:
            return False
        self._pins.discard(target)
        return True

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick
