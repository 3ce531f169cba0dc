"""Kept for old habits: the same as ``emolens bench`` (:mod:`emolens_tools.bench`)."""

from emolens_tools.bench import main

raise SystemExit(main())
