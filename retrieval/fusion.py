"""Fusing ranked lists from BM25 and dense search into one ranking.

Reciprocal rank fusion needs no score calibration (BM25 scores are unbounded, cosine ones are
not). The weighted (convex) fusion combines min-max normalised scores and can favour one retriever
where evaluation shows it is stronger; on shared/eval/dev it did (README, Performance), so
settings.RETRIEVAL_FUSION defaults to it and RRF is the option.
"""

from collections import defaultdict

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: list[list[tuple[int, float]]], weights: list[float], k: int = RRF_K
) -> list[tuple[int, float]]:
    """sum of weight / (k + rank) over the rankings each passage appears in, best first."""
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (passage_id, _) in enumerate(ranking, start=1):
            fused[passage_id] += weight / (k + rank)
    return _best_first(fused)


def weighted_fusion(rankings: list[list[tuple[int, float]]], weights: list[float]) -> list[tuple[int, float]]:
    """sum of weight x score normalised to [0, 1] within its ranking; absent counts as 0."""
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights, strict=True):
        if not ranking:
            continue
        scores = [score for _, score in ranking]
        low, high = min(scores), max(scores)
        for passage_id, score in ranking:
            fused[passage_id] += weight * ((score - low) / (high - low) if high > low else 1.0)
    return _best_first(fused)


def _best_first(scores: dict[int, float]) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))
