"""Kept for old habits: the same as ``python -m emolens_tools.synthetic`` (:mod:`emolens_tools.synthetic`)."""

from emolens_tools.synthetic import main

raise SystemExit(main())
