"""The README is also the PyPI page, where relative links break: every link is absolute, and
every link into this repository names a file that exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO_PREFIXES = ("https://github.com/napari-unet/napari-unet/blob/main/",
                 "https://raw.githubusercontent.com/napari-unet/napari-unet/main/")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _links() -> list[str]:
    return LINK.findall((ROOT / "README.md").read_text())


def test_readme_links_are_absolute():
    relative = [link for link in _links() if not link.startswith(("https://", "http://"))]
    assert relative == []


def test_readme_links_into_the_repository_name_existing_files():
    inside = [link for link in _links() if link.startswith(REPO_PREFIXES)]
    assert len(inside) >= 10
    missing = []
    for link in inside:
        prefix = next(p for p in REPO_PREFIXES if link.startswith(p))
        path = link[len(prefix):].split("#")[0]
        if not (ROOT / path).is_file():
            missing.append(path)
    assert missing == []
