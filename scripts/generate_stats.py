"""Kept for old habits: the same as ``python -m emolens.synthetic`` (:mod:`emolens.synthetic`)."""

from emolens.synthetic import main

raise SystemExit(main())
