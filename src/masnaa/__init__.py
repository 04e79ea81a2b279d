"""Masnaa: the control plane of a sovereign AI factory.

Layers (imports point downward only): ``domain`` ← ``scheduler`` / ``policy`` /
``accounting`` (pure) ← ``sim`` and ``service`` (the two drivers) ← ``api`` ←
``cli`` / portal. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
