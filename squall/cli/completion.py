"""``squall completion bash|zsh|fish``: print the shell's tab-completion script.

The script is click's own: at each <Tab> the shell runs ``squall`` with
``_SQUALL_COMPLETE=<shell>_complete`` and the words typed so far, and click answers with
the matching subcommands and options — so completion always knows every command,
including those imported lazily, without a generated list going stale. Install with::

    eval "$(squall completion bash)"     # in ~/.bashrc (bash 4.4 or later)
    eval "$(squall completion zsh)"      # in ~/.zshrc
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG_NAME = "squall"
# click's default variable for a program named "squall"; the script sets it.
COMPLETE_VAR = "_SQUALL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the tab-completion script for SHELL (eval it in the shell's rc file)."""
    from squall.cli.main import main

    completer = get_completion_class(shell)
    if completer is None:  # every name in SHELLS is one of click's
        raise click.ClickException(f"no completion for {shell}")
    script = completer(main, {}, PROG_NAME, COMPLETE_VAR).source()
    click.echo(script)
