"""`gitgw start`: the proxy, the Gitea webhook endpoint and the watcher, in one process."""

from __future__ import annotations

import asyncio
import contextlib

import click

from gitgw.cli._logs import configure_logging
from gitgw.cli._output import echo
from gitgw.cli.proxy import curl_example, serve_options, serving_gateway
from gitgw.daemon import Daemon, run_forever
from gitgw.proxy import ProxySettings
from gitgw.proxy.serve import Serving
from gitgw.services.gateway import Gateway

__all__ = ["command", "start_daemon"]


def start_daemon(
    gateway: Gateway,
    host: str,
    port: int,
    proxy_settings: ProxySettings,
    *,
    json_logs: bool = False,
) -> None:
    """Run the daemon until SIGTERM or Ctrl-C, saying where it serves."""
    configure_logging(json_logs)
    daemon = Daemon(gateway, host, port, proxy_settings)

    def ready(serving: Serving) -> None:
        config = gateway.config
        base = serving.url.removesuffix("/v1")
        hooks = (
            f"{base}/hooks/gitea"
            if config.gitea.webhook_secret_env
            else "off (set gitea.webhook_secret_env in gitgw.yaml)"
        )
        workflows = ", ".join(sorted(daemon.engine.workflows.workflows)) or "none"
        echo(f"gitgw: serving {serving.url} (state branch {gateway.repo.branch} at "
             f"{gateway.loaded.commit[:12]}, mode {config.mode})")  # fmt: skip
        echo(f"watching: branch {gateway.repo.branch} of {gateway.repo.path}")
        echo(f"workflows: {workflows}")
        echo(f"webhooks: {hooks}")
        first = next(iter(config.models), "MODEL")
        echo(f"try:   {curl_example(serving, first)}")
        echo("stop:  Ctrl-C or SIGTERM")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_forever(daemon, ready=ready))
    echo("gitgw: stopped; every receipt is on the state branch")


@click.command("start")
@serve_options
@click.option("--json-logs", is_flag=True, help="Log JSON lines on stderr (for machines).")
def command(host: str | None, port: int | None, upstream_timeout: float, json_logs: bool) -> None:
    """Run gitgw's engine: the proxy, Gitea webhooks and workflows, until stopped.

    One process serves the OpenAI-compatible proxy (see `gitgw proxy`) and, on the same
    port, POST /hooks/gitea (enabled when gitea.webhook_secret_env names a variable that
    is set). It watches the state branch: every new commit (from gitgw, a `git commit`,
    a `git push` into this repository, a sync) is checked like a push, refreshes the
    configuration, consent and workflows, and fires the workflows it matches; each new
    request file under requests/ is answered with a response record. Every workflow run
    and answer is in the run ledger (`gitgw runs list`).

    The daemon remembers the last commit it handled (under .git/gitgw/daemon/), so a
    restart resumes there and nothing fires twice; on a first start it follows from
    the current head. Runs a killed daemon left open are closed as interrupted.
    One daemon follows a branch at a time: a second `gitgw start` on the same
    repository and branch is refused.

    Logs are structured lines on stderr (--json-logs for JSON). SIGTERM or Ctrl-C stops
    it cleanly: running workflows get 10 s to finish, receipts are flushed.

    \b
    Example:
      gitgw start --port 8741
      git push origin gitgw          # from a clone: workflows fire within a second
    """
    with serving_gateway(host, port, upstream_timeout) as (gateway, where, proxy_settings):
        start_daemon(gateway, *where, proxy_settings, json_logs=json_logs)
