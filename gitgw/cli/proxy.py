"""`gitgw proxy`: serve the OpenAI-compatible proxy on the state branch's configuration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

import click

from gitgw.cli._output import echo
from gitgw.cli._repo import settings
from gitgw.proxy import ProxySettings
from gitgw.proxy.serve import Serving, serve_forever
from gitgw.services.gateway import Gateway

__all__ = ["command", "curl_example", "run_proxy", "serve_options", "serving_gateway"]


def curl_example(serving: Serving, model: str) -> str:
    """A curl line that calls the proxy."""
    body = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'
    return f"curl -s {serving.url}/chat/completions -H 'Content-Type: application/json' -d '{body}'"


def run_proxy(
    gateway: Gateway,
    host: str,
    port: int,
    proxy_settings: ProxySettings,
    *,
    example_model: str,
) -> None:
    """Serve until Ctrl-C, printing where and how to call it."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="gitgw proxy: %(levelname)s %(message)s"
    )

    def ready(serving: Serving) -> None:
        loaded = gateway.loaded
        echo(
            f"gitgw proxy: serving {serving.url} (state branch {gateway.repo.branch} at "
            f"{loaded.commit[:12]}, mode {loaded.config.mode})"
        )
        echo(f"try:   {curl_example(serving, example_model)}")
        echo("stop:  Ctrl-C")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(gateway, host, port, proxy_settings, ready=ready))
    echo("gitgw proxy: stopped; every receipt is on the state branch")


@contextlib.contextmanager
def serving_gateway(
    host: str | None, port: int | None, upstream_timeout: float
) -> Iterator[tuple[Gateway, tuple[str, int], ProxySettings]]:
    """The gateway of the selected state branch, where to listen (the options, else
    gitgw.yaml's `proxy`) and the proxy's settings; the gateway is closed afterwards."""
    current = settings()
    gateway = Gateway.open(current.repo, current.branch)
    try:
        config = gateway.config.proxy
        where = (host or config.host, config.port if port is None else port)
        yield gateway, where, ProxySettings(read_timeout_s=upstream_timeout)
    finally:
        gateway.close()


def serve_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of every command that serves the proxy: --host, --port,
    --upstream-timeout."""
    options = [
        click.option(
            "--host", help="The address to listen on [default: proxy.host in gitgw.yaml]."
        ),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            help="The port [default: proxy.port in gitgw.yaml].",
        ),
        click.option(
            "--upstream-timeout",
            type=click.FloatRange(min=0.1),
            default=120.0,
            show_default=True,
            help="Seconds without a byte from an upstream before it counts as hung.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("proxy")
@serve_options
def command(host: str | None, port: int | None, upstream_timeout: float) -> None:
    """Serve the OpenAI-compatible proxy: routes by trust level, a receipt per call.

    Clients call POST /v1/chat/completions (plain or streaming) with a model alias from
    gitgw.yaml, or PROVIDER/MODEL. Each request is classified (secrets, personal data,
    custom rules), checked against consent, and sent to the first candidate allowed to
    see it that answers; otherwise it is refused with an OpenAI-style error that says
    why. Every request leaves a receipt on the state branch.

    \b
    Also served: GET /v1/models, /health/live, /health/ready (never a model call)
    and /metrics (Prometheus).

    The proxy listens on 127.0.0.1 by default and refuses any other address unless
    gitgw.yaml has clients; beyond loopback, every request then needs a client's
    bearer token. Configuration and consent changes
    on the state branch (and `gitgw mode`) take effect within a second; an invalid
    configuration is logged and the last good one keeps serving.

    \b
    Example:
      gitgw proxy --port 8741
      curl -s http://127.0.0.1:8741/v1/models
    """
    with serving_gateway(host, port, upstream_timeout) as (gateway, where, proxy_settings):
        first = next(iter(gateway.config.models), "MODEL")
        run_proxy(gateway, *where, proxy_settings, example_model=first)
