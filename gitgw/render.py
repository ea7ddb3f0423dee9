"""The renderer: the only module that imports jinja2.

Templates live in `gitgw/templates/*.j2` and are rendered with `StrictUndefined`, so a
template that names a value its caller did not give fails loudly instead of printing
nothing. Output is text (markdown, prompts), so nothing is HTML-escaped.

A template given as text (a workflow's prompt, a request file's) comes from the state
branch, which anyone who may push writes: it is rendered in jinja2's immutable sandbox,
where it can read the values it is given and nothing else (no attributes that lead to
Python's internals, no calls that change anything), so it cannot run code on the
machine that renders it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gitgw.errors import GitgwError

__all__ = ["render_string", "render_template"]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return _make(jinja2.PackageLoader("gitgw", "templates"))


_OPTIONS: dict[str, Any] = {
    "undefined": jinja2.StrictUndefined,
    "autoescape": False,
    "keep_trailing_newline": True,
    "trim_blocks": True,
    "lstrip_blocks": True,
}


def _make(loader: jinja2.BaseLoader | None) -> jinja2.Environment:
    return jinja2.Environment(loader=loader, **_OPTIONS)


@lru_cache(maxsize=1)
def _sandbox() -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(**_OPTIONS)


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render the packaged template `name` (e.g. ``handoff_prompt.md.j2``) with `context`."""
    try:
        return _environment().get_template(name).render(context)
    except jinja2.TemplateNotFound:
        raise GitgwError(f"no template {name!r} in gitgw's templates") from None
    except jinja2.UndefinedError as exc:
        raise GitgwError(f"template {name}: {exc.message}") from None


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render a template given as text (a workflow's or a request's prompt) with
    `context`, in the sandbox (see the module docs)."""
    try:
        return _sandbox().from_string(source).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise GitgwError(f"template syntax error, line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise GitgwError(f"template: {exc.message}") from None
    except SecurityError as exc:
        raise GitgwError(f"template: not allowed: {exc}") from None
