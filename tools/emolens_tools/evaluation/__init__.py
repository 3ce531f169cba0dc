"""Evaluation of the shipped models: metrics (plain NumPy), the run behind ``emolens evaluate``
(:mod:`emolens_tools.evaluation.run`, needs the ``train`` extra) and the model card it renders
(:mod:`emolens_tools.evaluation.model_card`, from ``model_card.md.tmpl``)."""
