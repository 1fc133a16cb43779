"""MkDocs hook: tidy the Sphinx-style roles found in fastapi_tasks docstrings.

The library's docstrings use reStructuredText roles (``:class:`TaskConfig```) and literal-block
markers (``::``). mkdocstrings renders docstrings as Markdown, where those show up verbatim, so
this hook turns ``:class:`~pkg.mod.Name``` into plain ``Name`` code spans in the rendered HTML.
"""

from __future__ import annotations

import re
from typing import Any

# A role name right before a code span, as rendered: ":class:<code>...</code>".
_ROLE = re.compile(r":(?:class|func|meth|attr|exc|data|mod|obj):(?=<code)")
# "~pkg.mod.Name" inside a code span: Sphinx shows only the last component.
_TILDE = re.compile(r"(<code[^>]*>)~(?:[A-Za-z_][\w]*\.)*([A-Za-z_][\w]*)(</code>)")
# A paragraph ending in "::" introduces a literal block in reStructuredText.
_LITERAL_MARKER = re.compile(r"::(</p>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    html = _ROLE.sub("", html)
    html = _TILDE.sub(r"\1\2\3", html)
    return _LITERAL_MARKER.sub(r":\1", html)
