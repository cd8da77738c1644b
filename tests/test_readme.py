"""README.md's relative links lead to files of the repository (s6 fresh user: the link to
``../shared/data/README.md`` was broken in a clone: the data folder is not in it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def relative_links(markdown: str) -> list[str]:
    """The targets of ``[text](target)`` links that are not URLs nor anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_relative_links_stay_in_the_repository_and_exist() -> None:
    links = relative_links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "docs/dashboard.png" in links  # the parser finds the links there are
    for target in links:
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT.resolve()), f"{target} is outside the repository"
        assert path.exists(), f"{target}: no such file"


def test_the_parser_sees_a_link_out_of_the_clone() -> None:
    text = "the [data](../shared/data/README.md), [site](https://x.example) and [top](#top)"
    assert relative_links(text) == ["../shared/data/README.md"]
