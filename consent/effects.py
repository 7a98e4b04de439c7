"""What a narrower consent means to the apps it governs: a typed registry of effects.

consent.services decides that the consent in force for a session now covers less (a withdrawal,
or a newer record that grants less) and announces it as a ``ConsentNarrowed``. The apps that act
on it register a ``ConsentEffect`` in their ``AppConfig.ready()`` (recordings restricts and stops
the session's recordings, mentoring drops the viewers it no longer covers), so consent imports
none of them and stays the one place that decides.

An effect has up to two parts:

- ``within`` runs inside the withdrawal's own transaction: writes that must commit with the
  withdrawal or not at all (a recording's restriction). An exception rolls the withdrawal back
  and reaches the person who asked for it.
- ``deliver`` acts outside the database (the media edge, the WebSockets). It runs after commit in
  the ``consent.tasks.consent_effect_deliver`` Celery job, one job per effect: it must be
  idempotent and raise while its work is not done; the job retries it with back-off and audits
  the failure when it gives up. Nothing here catches an effect's error and carries on.

Effects run in the order they were registered. Called by consent.services only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ConsentNarrowed:
    """The consent in force for one session covers less than before.

    ``granted`` holds the purposes the consent now in force still grants (empty when none is in
    force). ``by_id`` is the user who acted. Plain values only, so the announcement travels to
    a Celery worker as JSON and reads the same there.
    """

    session_id: int
    session_public_id: str
    granted: frozenset[str]
    by_id: int | None
    reason: str

    def covers(self, purpose: str) -> bool:
        return purpose in self.granted

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "session_public_id": self.session_public_id,
            "granted": sorted(self.granted),
            "by_id": self.by_id,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsentNarrowed:
        return cls(
            session_id=int(data["session_id"]),
            session_public_id=str(data["session_public_id"]),
            granted=frozenset(data["granted"]),
            by_id=None if data["by_id"] is None else int(data["by_id"]),
            reason=str(data["reason"]),
        )


class Hook(Protocol):
    """An effect's part: called with the announcement, keyword-only; returns nothing, raises on failure."""

    def __call__(self, *, change: ConsentNarrowed) -> None: ...


@dataclass(frozen=True)
class ConsentEffect:
    """One app's answer to a narrower consent. ``name`` is stable: the delivery job finds the
    effect by it (``"recordings.stop"``, ``"mentoring.drop_viewers"``)."""

    name: str
    within: Hook | None = None
    deliver: Hook | None = None


class ConsentEffects:
    """The registry: ``consent_effects.register(ConsentEffect(...))`` from ``AppConfig.ready()``."""

    def __init__(self) -> None:
        self._effects: dict[str, ConsentEffect] = {}

    def register(self, effect: ConsentEffect) -> None:
        known = self._effects.get(effect.name)
        if known is not None and known != effect:
            raise ValueError(f"a different consent effect is already registered as {effect.name!r}")
        self._effects[effect.name] = effect

    def unregister(self, name: str) -> None:
        self._effects.pop(name, None)

    def get(self, name: str) -> ConsentEffect:
        try:
            return self._effects[name]
        except KeyError:
            raise LookupError(f"no consent effect is registered as {name!r}") from None

    def __iter__(self) -> Iterator[ConsentEffect]:
        return iter(list(self._effects.values()))

    def names(self) -> list[str]:
        return list(self._effects)


consent_effects = ConsentEffects()
