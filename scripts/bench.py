"""Kept for old habits: the same as ``emolens bench`` (:mod:`emolens.bench`)."""

from emolens.bench import main

raise SystemExit(main())
