"""The root of the ``masnaa`` command.

Each verb lives in its own module with a ``register(app)`` function; this file
only wires them, so adding a verb is one line here and no verb module imports
another.
"""

from __future__ import annotations

import typer

from masnaa import __version__

app = typer.Typer(
    name="masnaa",
    help="Masnaa: the control plane of a sovereign AI factory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Masnaa: the control plane of a sovereign AI factory."""


@app.command()
def version() -> None:
    """Print Masnaa's version."""
    typer.echo(__version__)


def _register_verbs() -> None:
    # Imported here, not at the top, so that each verb module may import the
    # layers it needs without the root knowing about them.
    from masnaa.cli import accounting, admin, audit, data, jobs, plan, sim, up

    for module in (jobs, admin, accounting, data, audit, sim, plan, up):
        module.register(app)


_register_verbs()
