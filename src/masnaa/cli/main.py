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
    # One line per verb module (keep sorted).
    from masnaa.cli import admin, jobs; jobs.register(app); admin.register(app)  # noqa: E702, I001
    from masnaa.cli import audit; audit.register(app)  # noqa: E702, I001
    from masnaa.cli import sim; sim.register(app)  # noqa: E702, I001
    from masnaa.cli import up; up.register(app)  # noqa: E702, I001
    pass


_register_verbs()
