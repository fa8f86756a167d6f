"""Scores of a binary "supported" classifier: accuracy at a threshold, ROC AUC and the best threshold."""

from collections.abc import Sequence

import numpy as np


def accuracy(probabilities: Sequence[float], labels: Sequence[bool], threshold: float) -> float:
    """The share of pairs where `probability >= threshold` agrees with the label."""
    predicted = np.asarray(probabilities) >= threshold
    return float(np.mean(predicted == np.asarray(labels, bool)))


def roc_auc(probabilities: Sequence[float], labels: Sequence[bool]) -> float:
    """The chance that a random supported pair outscores a random unsupported one (ties count half).

    Computed from ranks (the Mann-Whitney U statistic), with tied scores sharing their average rank.
    """
    scores = np.asarray(probabilities, np.float64)
    positive = np.asarray(labels, bool)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_ranks = np.cumsum(counts) - (counts - 1) / 2
    ranks = average_ranks[inverse]
    positives, negatives = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def best_threshold(probabilities: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """The threshold with the highest accuracy, and that accuracy.

    Candidates lie halfway between neighbouring distinct scores, so that no score sits exactly on the
    threshold; of equally good ones the lowest wins.
    """
    distinct = np.unique(np.asarray(probabilities, np.float64))
    candidates = np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [np.nextafter(distinct[-1], 2)]])
    accuracies = [accuracy(probabilities, labels, threshold) for threshold in candidates]
    best = int(np.argmax(accuracies))
    return float(candidates[best]), accuracies[best]


def binary_scores(probabilities: Sequence[float], labels: Sequence[bool]) -> dict:
    """The scores the manifest records for one dev set."""
    threshold, best_accuracy = best_threshold(probabilities, labels)
    return {
        "pairs": len(labels),
        "accuracy_at_0.5": round(accuracy(probabilities, labels, 0.5), 4),
        "roc_auc": round(roc_auc(probabilities, labels), 4),
        "best_threshold": round(threshold, 4),
        "accuracy_at_best_threshold": round(best_accuracy, 4),
    }
