"""Real Python modules that generated scripts are made of (so ruff and mypy check that code).

A template is included verbatim, except for two marked blocks:

- `# <template-imports>` ... `# </template-imports>`: imports of sibling templates, there for
  the type checker only; the script includes those templates' source instead.
- `# <plan>` ... `# </plan>`: placeholder constants (and stubs) standing for what the agent
  decides for one dataset; the writer puts its own constants there.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_FOLDER = Path(__file__).resolve().parent
_IMPORTS_BLOCK = re.compile(r"# <template-imports>\n.*?# </template-imports>\n", re.DOTALL)
_PLAN_BLOCK = re.compile(r"# <plan>\n.*?# </plan>\n", re.DOTALL)


@cache
def _read(name: str) -> str:
    path = _FOLDER / f"{name}.py"
    if path.parent != _FOLDER or not path.is_file():
        raise ValueError(f"no template named {name!r}")
    return path.read_text(encoding="utf-8")


def template_source(name: str, plan: str | None = None) -> str:
    """The source of templates/<name>.py, framed by comments saying where it came from.

    `plan` replaces the template's plan block; a template with a plan block needs one.
    """
    body = _IMPORTS_BLOCK.sub("", _read(name))
    if _PLAN_BLOCK.search(body):
        if plan is None:
            raise ValueError(f"template {name!r} needs the agent's plan constants")
        body = _PLAN_BLOCK.sub(lambda _: plan.strip("\n") + "\n", body, count=1)
    elif plan is not None:
        raise ValueError(f"template {name!r} has no plan block")
    body = body.strip("\n")
    return f"\n# --- from activities/offline/templates/{name}.py ---\n{body}\n# --- end of {name}.py ---\n"
