"""The ``emolens`` verbs these tools add, as ``name -> "module:function"`` (each function takes
the arguments that follow its verb). The same table is the ``emolens.tools`` entry-point group
in tools/pyproject.toml, which is what ``emolens`` reads when the tools are installed; this copy
serves a checkout whose ``tools/`` is on sys.path but not installed (a test checks they agree).
Importing it imports nothing else."""

from __future__ import annotations

VERBS: dict[str, str] = {
    "bench": "emolens_tools.bench:main",
    "evaluate": "emolens_tools.evaluation.run:main",
    "dev": "emolens_tools.dev:main",
}
