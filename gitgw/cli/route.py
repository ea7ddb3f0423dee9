"""`gitgw route explain`: what the proxy would do with a request, without sending it."""

from __future__ import annotations

import json
from typing import IO

import click

from gitgw.cli._output import echo, emit_json, table
from gitgw.cli._repo import settings
from gitgw.errors import GitgwError
from gitgw.records import LEVELS
from gitgw.services.explain import Explanation, explain
from gitgw.services.gateway import Gateway


@click.group("route")
def command() -> None:
    """Look at the trust router's decisions without calling any model."""


def _body(source: IO[bytes], model: str | None) -> bytes:
    data = source.read()
    if model is None:
        return data
    try:
        request = json.loads(data)
    except ValueError as exc:
        raise GitgwError(f"the request is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise GitgwError("the request must be a JSON object with `messages`")
    request["model"] = model
    return json.dumps(request).encode("utf-8")


@command.command("explain")
@click.option("--model", help="The model or alias to ask for [default: the request's `model`].")
@click.option(
    "--file",
    "source",
    type=click.File("rb"),
    required=True,
    help="The request body (OpenAI chat completion JSON); - reads standard input.",
)
@click.option("--client", help="Explain it as sent by this client of gitgw.yaml.")
@click.option(
    "--trust",
    "declared",
    type=click.Choice(LEVELS),
    help="A level the client declares (x-gitgw-trust): it raises the level, never lowers it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def explain_command(
    model: str | None,
    source: IO[bytes],
    client: str | None,
    declared: str | None,
    as_json: bool,
) -> None:
    """Explain how the proxy would route a request: a dry run, nothing is sent.

    Prints the trust level the request gets and the rules that matched (their names,
    never the matched text), each candidate of the model with why it is allowed,
    rejected (mode, trust, consent) or skipped (its key variable is not set), and the
    route the proxy would take, or the error it would answer with. Provider health
    is not known outside a running proxy: every provider counts as up.

    \b
    Examples:
      gitgw route explain --model chat --file request.json
      echo '{"messages": [{"role": "user", "content": "mail me at a@b.example"}]}' \\
        | gitgw route explain --model chat --file -
    """
    body = _body(source, model)
    current = settings()
    gateway = Gateway.open(current.repo, current.branch)
    try:
        result = explain(gateway, body, client=client, declared=declared)
    finally:
        gateway.close()
    if as_json:
        emit_json(result)
    else:
        _print(result)
    if result.route is None:
        raise SystemExit(1)


def _print(result: Explanation) -> None:
    model = result.model if result.alias is None else f"{result.model} (alias)"
    echo(f"model:      {model}")
    if result.rerouted_from:
        echo(f"rerouted:   from {result.rerouted_from} (trust.on_violation: reroute)")
    echo(f"level:      {result.level} ({result.because})")
    echo(f"rules:      {', '.join(result.rules) or 'none'}")
    if result.client:
        echo(f"client:     {result.client}")
    echo(f"mode:       {result.mode} (config at {result.config_commit[:12]})")
    echo()
    rows: list[tuple[str, ...]] = [
        (
            str(number),
            f"{c.provider}/{c.model}",
            f"{c.location}, max {c.max_trust}",
            c.verdict,
            c.reason,
        )
        for number, c in enumerate(result.candidates, 1)
    ]
    if rows:
        table(rows, ("#", "candidate", "where", "verdict", "why"))
        echo()
    if result.route is not None:
        then = f" (if it fails: {', then '.join(result.fallbacks)})" if result.fallbacks else ""
        echo(f"route:      {result.route}{then}")
    else:
        assert result.refusal is not None
        echo(f"route:      none: HTTP {result.refusal['status']} {result.refusal['code']}")
        echo(f"message:    {result.refusal['message']}")
