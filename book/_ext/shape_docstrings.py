"""Sphinx extension: let docstring shape tables such as ``obs (B, *obs_shape)`` render as written.

marlkit's docstrings are written to be read in the source, and their shape tables use Python's
unpacking star: ``obs (batch, *obs_shape) -> latent (batch, latent_dim)``. In reStructuredText a
``*`` that starts a word opens emphasis, so such a line is a markup error (and would fail the book's
``-W`` build) although nothing is wrong with the docstring. This hook escapes every star that opens
emphasis without closing it on the same line; real emphasis (``*list*``), inline code, literal blocks
and doctest lines are left alone.
"""

from __future__ import annotations

import re

# A run of one or two stars that could open emphasis: at a word start, directly before a word or "(".
OPENING_STARS = re.compile(r"(?<![\w*\\])\*{1,2}(?=[\w(])")
# Inline code (``x``) or interpreted text (`x`): stars inside are not markup.
BACKTICKS = re.compile(r"(`+[^`]*`+)")


def escape_unclosed_stars(text: str) -> str:
    """``"(B, *obs_shape)"`` -> ``"(B, \\*obs_shape)"``; ``"a *list* of"`` is unchanged."""
    parts = BACKTICKS.split(text)
    for i in range(0, len(parts), 2):  # even positions are outside backticks
        out, rest = "", parts[i]
        while match := OPENING_STARS.search(rest):
            before, stars, rest = rest[: match.start()], match.group(), rest[match.end() :]
            # Real emphasis if the same stars close after a non-space later in the line (code excluded).
            later = " ".join([rest, *parts[i + 2 :: 2]])
            closed = re.search(rf"[^\s*]{re.escape(stars)}(?![\w*])", later)
            out += before + (stars if closed else "\\*" * len(stars))
        parts[i] = out + rest
    return "".join(parts)


def escape_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """``autodoc-process-docstring`` handler: rewrite ``lines`` in place (after napoleon)."""
    literal_indent = None  # indentation of the line that opened a ``::`` literal block
    for index, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and (not line.strip() or indent > literal_indent):
            continue  # inside a literal block
        literal_indent = None
        if line.lstrip().startswith((">>>", "...")):
            continue  # doctest lines are shown verbatim
        lines[index] = escape_unclosed_stars(line)
        if line.rstrip().endswith("::"):
            literal_indent = indent


def setup(app):
    # priority > 500 (napoleon's default): run on napoleon's reStructuredText output.
    app.connect("autodoc-process-docstring", escape_docstring, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
