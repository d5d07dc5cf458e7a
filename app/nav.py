"""The dashboard's pages: one registry that the navigation and every page switch read.

Pages are files in ``pages/``; a file listed here gets its title, icon and section, and any other
``pages/*.py`` is still shown (titled from its file name) so a new page never goes missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parents[1] / "pages"


@dataclass(frozen=True)
class PageInfo:
    file: str  # file name in pages/
    title: str
    icon: str  # Material Symbols name, as st.Page takes it
    section: str  # navigation group


PAGES: tuple[PageInfo, ...] = (
    PageInfo("datasets.py", "Datasets", ":material/photo_library:", "Set up"),
    PageInfo("new_study.py", "New study", ":material/tune:", "Set up"),
    PageInfo("jobs.py", "Jobs", ":material/pending_actions:", "Run"),
    PageInfo("leaderboard.py", "Leaderboard", ":material/leaderboard:", "Results"),
    PageInfo("curves.py", "Learning curves", ":material/show_chart:", "Results"),
    PageInfo("compare.py", "Compare masks", ":material/compare:", "Results"),
    PageInfo("predictions.py", "Compare predictions", ":material/fact_check:", "Results"),  # classification studies
    PageInfo("insights.py", "Insights", ":material/insights:", "Results"),
    PageInfo("export.py", "Export", ":material/download:", "Results"),
    PageInfo("compress.py", "Compress & deploy", ":material/compress:", "Results"),
)
OTHER_SECTION = "More"


def page_path(file: str) -> Path:
    """Absolute path of a page file, for ``st.switch_page`` and ``st.page_link``."""
    path = PAGES_DIR / file
    if not path.is_file():
        known = sorted(p.name for p in PAGES_DIR.glob("*.py"))
        raise FileNotFoundError(f"no page {file!r} in {PAGES_DIR}; pages: {known}")
    return path


def available_pages() -> list[PageInfo]:
    """Registered pages whose file exists, then any unregistered page files, in a stable order."""
    registered = [info for info in PAGES if (PAGES_DIR / info.file).is_file()]
    known = {info.file for info in PAGES}
    extra = [
        PageInfo(path.name, path.stem.replace("_", " ").capitalize(), ":material/article:", OTHER_SECTION)
        for path in sorted(PAGES_DIR.glob("*.py"))
        if path.name not in known and not path.name.startswith("_")
    ]
    return registered + extra
