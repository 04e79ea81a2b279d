"""The ``masnaa`` command (Typer + Rich). Each verb group lives in its own module."""
