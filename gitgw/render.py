"""The renderer: the only module that imports jinja2.

Templates live in `gitgw/templates/*.j2` and are rendered with `StrictUndefined`, so a
template that names a value its caller did not give fails loudly instead of printing
nothing. Output is text (markdown, prompts), so nothing is HTML-escaped.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from gitgw.errors import GitgwError

__all__ = ["render_string", "render_template"]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return _make(jinja2.PackageLoader("gitgw", "templates"))


def _make(loader: jinja2.BaseLoader | None) -> jinja2.Environment:
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render the packaged template `name` (e.g. ``handoff_prompt.md.j2``) with `context`."""
    try:
        return _environment().get_template(name).render(context)
    except jinja2.TemplateNotFound:
        raise GitgwError(f"no template {name!r} in gitgw's templates") from None
    except jinja2.UndefinedError as exc:
        raise GitgwError(f"template {name}: {exc.message}") from None


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render a template given as text (a workflow's prompt) with `context`."""
    try:
        return _make(None).from_string(source).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise GitgwError(f"template syntax error, line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise GitgwError(f"template: {exc.message}") from None
