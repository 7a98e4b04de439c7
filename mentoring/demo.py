"""What ``manage.py seed_demo`` seeds beyond mentoring's own room, people and live session.

Apps above mentoring register a seeder in their ``AppConfig.ready()`` (training adds a programme,
its people and an assessed recording), so mentoring imports none of them. A seeder is given the
demo's cast, must be idempotent (``make run`` seeds on every start), and returns the lines it
adds to the demo's secrets file (sign-ins, links): never printed to the terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoCast:
    """The demo's coordinator and surgeon, its consent form (every purpose), and the password its
    accounts sign in with (a secret: only for the links file)."""

    coordinator: Any
    surgeon: Any
    consent_form: Any
    password: str


DemoSeeder = Callable[[DemoCast], list[str]]


class DemoSeeders:
    def __init__(self) -> None:
        self._seeders: dict[str, DemoSeeder] = {}

    def register(self, name: str, seeder: DemoSeeder) -> None:
        self._seeders[name] = seeder

    def run(self, cast: DemoCast) -> list[str]:
        lines: list[str] = []
        for seeder in self._seeders.values():
            lines.extend(seeder(cast))
        return lines


demo_seeders = DemoSeeders()
