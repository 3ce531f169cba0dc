import numpy as np
import pytest

from emolens_tools.evaluation.scores import class_report, confusion_matrix, roc_auc


def test_confusion_matrix_counts_true_rows_predicted_columns():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_class_report_by_hand():
    # true: 0 0 1 2 2 2 ; pred: 0 1 1 2 0 2
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    rep = class_report(cm)
    assert rep.accuracy == pytest.approx(4 / 6)
    assert rep.precision.tolist() == pytest.approx([1 / 2, 1 / 2, 1.0])
    assert rep.recall.tolist() == pytest.approx([1 / 2, 1.0, 2 / 3])
    f1_2 = 2 * 1.0 * (2 / 3) / (1 + 2 / 3)
    assert rep.f1.tolist() == pytest.approx([0.5, 2 / 3, f1_2])
    assert rep.macro_f1 == pytest.approx((0.5 + 2 / 3 + f1_2) / 3)
    assert rep.support.tolist() == [2, 1, 3]


def test_class_never_predicted_has_zero_precision_not_nan():
    rep = class_report(confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2))
    assert rep.precision.tolist() == [0.5, 0.0]
    assert not np.isnan(rep.f1).any()


def test_roc_auc_perfect_inverted_and_ties():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    # one positive below one negative: 3 of 4 pairs ordered
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))
