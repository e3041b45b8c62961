"""The docs say what the code does: every setting a scenario page names exists, with the default
the page states; every dashboard panel is in docs/dashboard.md, and the README's "Watch it
live" names every scenario on the page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clickstream.events.results import METRICS
from clickstream.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "docs" / "scenarios").glob("*.md"))
NAMED = re.compile(r"`([a-z_]+)\.([a-z_]+)`(?: \(([^)]*)\))?")
NOT_SETTINGS = {"bookstore.events", "joins.counts"}
"""Dotted names on the pages that are not settings: a Cassandra table, a query."""
UNITS = {"s": 1, "min": 60, "hour": 3600, "hours": 3600, "day": 86_400, "days": 86_400}
STATED = re.compile(r"^(?:default `([^`]+)`|([\d.,]+) (s|min|hours?|days?))\b")


def stated_settings(page: Path, settings: Settings) -> list[tuple[str, str, str | None, int]]:
    """(section, field, what the page says in the parentheses after it, line) for each dotted
    name on ``page`` whose section is a settings section; metrics, tables, queries and names
    the same line calls gone are left out."""
    sections = set(type(settings).model_fields)
    found = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        for match in NAMED.finditer(line):
            section, field, said = match.groups()
            name = f"{section}.{field}"
            if section not in sections or name in METRICS or name in NOT_SETTINGS:
                continue
            if "gone" in line[match.end() :]:
                continue
            found.append((section, field, said, number))
    return found


@pytest.mark.parametrize("page", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_setting_a_scenario_page_names_exists_with_its_stated_default(page: Path) -> None:
    settings = load_settings(environ={})
    named = stated_settings(page, settings)
    assert named, f"{page.name} names no setting"
    for section, field, said, line in named:
        where = f"{page.name}:{line}: {section}.{field}"
        group = getattr(settings, section)
        assert field in type(group).model_fields, f"{where} is not a setting"
        stated = STATED.match(said or "")
        if stated is None:
            continue
        value = getattr(group, field)
        text, number, unit = stated.groups()
        if text is not None:
            assert str(value) == text, f"{where}: the page says {text!r}, the default is {value!r}"
        else:
            seconds = float(number.replace(",", "")) * UNITS[unit]
            assert float(value) == seconds, f"{where}: the page says {said!r}, the default {value}"


def test_the_checker_reads_a_wrong_default_as_wrong(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Every `jobs.count_trigger_s` (1 s), and `songs.all` and `joins.counts`.\n")
    (named,) = stated_settings(page, load_settings(environ={}))
    section, field, said, _ = named
    stated = STATED.match(said or "")
    assert stated is not None
    assert stated.groups() == (None, "1", "s")
    assert (section, field) == ("jobs", "count_trigger_s")
    assert load_settings(environ={}).jobs.count_trigger_s != 1


def test_every_dashboard_panel_is_in_the_docs_and_the_readme_names_every_scenario() -> None:
    page = (ROOT / "src" / "clickstream" / "dashboard" / "static" / "index.html").read_text()
    titles = re.findall(r'<section class="panel[^"]*" id="panel-[^"]+">\s*<h2>([^<]+)', page)
    assert len(titles) >= 10, titles
    docs = (ROOT / "docs" / "dashboard.md").read_text().lower()
    missing = {title.strip() for title in titles if title.strip().lower() not in docs}
    assert not missing, f"docs/dashboard.md leaves out the panels {sorted(missing)}"
    readme = (ROOT / "README.md").read_text()
    live = readme.split("## Watch it live", 1)[1].split("\n## ", 1)[0].lower()
    for scenario in ("shop", "web", "bookstore", "songs", "joins"):
        assert scenario in live, f"the README's 'Watch it live' leaves out the {scenario} panels"
