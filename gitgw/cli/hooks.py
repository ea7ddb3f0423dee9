"""`gitgw hooks`: the same checks on a person's commit and on a push as on gitgw's writes,
and the Gitea webhook that tells gitgw about pushes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from gitgw.cli._output import echo, err
from gitgw.cli._repo import open_repo, settings
from gitgw.errors import GitgwError
from gitgw.services import hooks


@click.group("hooks")
def command() -> None:
    """Run gitgw's checks as Git hooks, so every way into the branch passes them.

    gitgw's own writes run them in process. For commits made by people in a clone of
    the state branch, the pre-commit framework runs them (this project publishes
    gitgw-validate, gitgw-append-only and gitgw-secrets in .pre-commit-hooks.yaml). For
    pushes, a server-side pre-receive hook runs them. For a Gitea server, gitea-setup
    sets up the webhook that tells gitgw about pushes.

    \b
    In a clone of the state branch, .pre-commit-config.yaml:
      repos:
        - repo: <gitgw's repository URL>
          rev: <a tag>
          hooks: [{id: gitgw-validate}, {id: gitgw-append-only}, {id: gitgw-secrets}]
    On the server, once:
      gitgw hooks install --server /srv/git/state.git
    """


def _report(problems: list[hooks.Problem], what: str) -> None:
    for problem in problems:
        err(f"gitgw: {problem}")
    if problems:
        err(f"gitgw: {len(problems)} problem(s); {what}")
        raise SystemExit(1)


@command.command("run")
@click.argument("check", type=click.Choice(["validate", "append-only", "secrets"]))
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
def run(check: str, files: tuple[str, ...]) -> None:
    """Run one check in a clone of the state branch (as the pre-commit framework does).

    \b
    validate     FILES match their schema, digest and place (every tracked file if none)
    secrets      FILES hold nothing that looks like a key, token or credential
    append-only  the staged changes modify or delete no add-only record

    Exits 1 naming each file and the reason (never a secret's value).
    """
    if check == "append-only":
        problems = hooks.staged_append_only()
        _report(problems, "add-only records are never changed: add a new record instead")
        return
    problems = hooks.check_paths(check, files)
    _report(
        problems,
        "fix the files above"
        if check == "validate"
        else "remove the secrets above (refer to them by name; keep them in a vault)",
    )


@command.command("pre-receive")
def pre_receive() -> None:
    """Check a push (run by the server's pre-receive hook; reads git's lines on stdin).

    Every commit the push brings to the state branch is checked: its new and changed
    files (format and secrets), that it modifies or deletes no add-only record, and that
    the branch only moves forward. Exits 1, refusing the whole push, naming each file.
    """
    problems = hooks.pre_receive(sys.stdin.read().splitlines(), settings().branch)
    _report(problems, f"push to {settings().branch!r} refused; nothing was changed")


@command.command("install")
@click.argument(
    "repo", required=False, type=click.Path(file_okay=False, path_type=Path), default="."
)
@click.option("--server", is_flag=True, help="Install the server-side pre-receive hook.")
@click.option("--force", is_flag=True, help="Replace a pre-receive hook that is not gitgw's.")
def install(repo: Path, server: bool, force: bool) -> None:
    """Install the pre-receive hook into REPO, a repository that receives pushes.

    The hook runs this gitgw (with this Python) on every push and guards the state branch
    named by --branch. Clones use the pre-commit framework instead (see `gitgw hooks
    --help`).
    """
    if not server:
        raise click.UsageError(
            "only the server hook is installed by gitgw (--server); in a clone, use the "
            "pre-commit framework with this project's .pre-commit-hooks.yaml"
        )
    target = hooks.install_server_hook(repo, settings().branch, force)
    echo(f"installed {target} (guards branch {settings().branch!r})")


SECRET_ENV_EXAMPLE = "GITEA_WEBHOOK_SECRET"


@command.command("gitea-setup")
@click.option(
    "--url",
    "url",
    required=True,
    metavar="URL",
    help="gitgw's address as the Gitea server reaches it, e.g. http://gitgw.internal:8741 "
    "(/hooks/gitea is added to a bare address).",
)
@click.option(
    "--repo",
    "gitea_repo",
    required=True,
    metavar="OWNER/NAME",
    help="The Gitea repository whose pushes gitgw should hear about.",
)
@click.option(
    "--branch-filter",
    metavar="GLOB",
    help="Deliver pushes to matching branches only (Gitea's branch filter, e.g. 'main').",
)
@click.option(
    "--create",
    is_flag=True,
    help="Create the webhook through Gitea's API (needs gitea.url and gitea.token_env).",
)
def gitea_setup(url: str, gitea_repo: str, branch_filter: str | None, create: bool) -> None:
    """Set up the Gitea webhook that tells gitgw about pushes (POST /hooks/gitea).

    Without --create, prints the JSON that creates the webhook (POST
    /api/v1/repos/OWNER/NAME/hooks) and how to set its secret; the secret is shown as a
    placeholder naming its variable, never its value. With --create, gitgw creates the
    webhook itself, with the API token from the variable gitea.token_env names and the
    secret from the variable gitea.webhook_secret_env names, and prints the hook's id.

    Gitea signs every delivery with the secret (X-Gitea-Signature); gitgw answers 401 to
    a delivery it cannot verify, and 404 while the secret variable is not set where it
    runs. Note that --repo here is the Gitea repository; gitgw's own --repo (before
    `hooks`) still chooses the local repository whose gitgw.yaml is read.

    \b
    In gitgw.yaml:
      gitea:
        url: http://gitea.internal:3000
        token_env: GITEA_TOKEN
        webhook_secret_env: GITEA_WEBHOOK_SECRET
    Then:
      export GITEA_WEBHOOK_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')
      gitgw hooks gitea-setup --url http://gitgw.internal:8741 --repo team/state --create
    """
    from gitgw.concepts.store import Store
    from gitgw.services import gitea  # httpx is loaded only for this command

    hook_url = gitea.hook_url_of(url)
    with open_repo() as repo:
        config = Store(repo).config().gitea
    secret_env = config.webhook_secret_env
    if not create:
        body = gitea.webhook_config(
            hook_url, secret_env=secret_env or SECRET_ENV_EXAMPLE, branch_filter=branch_filter
        )
        echo(f"The webhook for {gitea_repo}: POST /api/v1/repos/{gitea_repo}/hooks with")
        echo(json.dumps(body, indent=2))
        echo()
        _explain_secret(secret_env)
        echo()
        echo("Or let gitgw create it: add --create (needs gitea.url and gitea.token_env).")
        return
    if not secret_env:
        raise GitgwError(
            "gitea.webhook_secret_env is not set in gitgw.yaml",
            f"add `webhook_secret_env: {SECRET_ENV_EXAMPLE}` under gitea: and set that "
            "variable to a long random secret",
        )
    secret = os.environ.get(secret_env)
    if not secret:
        raise GitgwError(
            f"the variable {secret_env} (gitea.webhook_secret_env) is not set",
            f"export {secret_env}=$(python -c 'import secrets; print(secrets.token_hex(32))') "
            "here and where gitgw runs",
        )
    with gitea.client_from_config(config) as client:
        hook_id = client.create_webhook(gitea_repo, hook_url, secret, branch_filter=branch_filter)
    echo(f"created webhook {hook_id} on {gitea_repo}: push events go to {hook_url}")
    echo(f"gitgw verifies them with the secret in ${secret_env}; keep it set where gitgw runs.")


def _explain_secret(secret_env: str | None) -> None:
    if secret_env:
        echo(
            f"The secret is the value of ${secret_env} (gitea.webhook_secret_env): put the "
            "same value in the webhook's secret field, and keep the variable set where "
            "gitgw runs. To make one:"
        )
        echo(f"  export {secret_env}=$(python -c 'import secrets; print(secrets.token_hex(32))')")
        return
    echo(
        "gitgw.yaml names no secret variable yet, so POST /hooks/gitea answers 404. Add "
        f"`webhook_secret_env: {SECRET_ENV_EXAMPLE}` under `gitea:` in gitgw.yaml, then:"
    )
    echo(
        f"  export {SECRET_ENV_EXAMPLE}=$(python -c 'import secrets; print(secrets.token_hex(32))')"
    )
