"""How a question is answered, from the settings of the collections it is searched in.

A collection's empty settings are the site's (KB_ANSWER_SOURCES, KB_FACTCHECK_THRESHOLD,
KB_ANSWER_POLICY). A question may search several collections with different presets (a legal and
a general one): it is answered by the strictest of their settings (the most sources, the highest
citation and refusal thresholds, dropping over flagging), in their common answer style (plain
when they differ). Disclaimers are not part of it: each collection's is shown with the answers
that cite it, to readers who may see the citation (kb.selectors.disclaimers).
"""

from dataclasses import dataclass

from django.conf import settings

from kb.presets import AnswerStyle, FactcheckPolicy


@dataclass(frozen=True)
class AnswerPolicy:
    sources: int
    citation_threshold: float
    refusal_threshold: float
    factcheck_policy: str
    style: str

    def refusal(self, supported: int, sentences: int) -> str | None:
        """Why an answer with `supported` of its `sentences` backed is refused, or None."""
        if not supported:
            return "nothing_supported"
        if supported < self.refusal_threshold * sentences:
            return "too_little_supported"
        return None


def combined_policy(collections) -> AnswerPolicy:
    """The policy for a question searched in `collections` (Collection rows; none: the site's)."""
    own = [_own_policy(collection) for collection in sorted(collections, key=lambda row: row.name)]
    policies = own or [_site_policy()]
    styles = {policy.style for policy in policies}
    flagging = all(policy.factcheck_policy == FactcheckPolicy.FLAG for policy in policies)
    return AnswerPolicy(
        sources=max(policy.sources for policy in policies),
        citation_threshold=max(policy.citation_threshold for policy in policies),
        refusal_threshold=max(policy.refusal_threshold for policy in policies),
        factcheck_policy=FactcheckPolicy.FLAG if flagging else FactcheckPolicy.DROP,
        style=styles.pop() if len(styles) == 1 else AnswerStyle.PLAIN,
    )


def _own_policy(collection) -> AnswerPolicy:
    threshold = collection.citation_threshold
    return AnswerPolicy(
        sources=collection.answer_sources or settings.KB_ANSWER_SOURCES,
        citation_threshold=settings.KB_FACTCHECK_THRESHOLD if threshold is None else threshold,
        refusal_threshold=collection.refusal_threshold,
        factcheck_policy=collection.factcheck_policy or settings.KB_ANSWER_POLICY,
        style=collection.answer_style,
    )


def _site_policy() -> AnswerPolicy:
    return AnswerPolicy(
        sources=settings.KB_ANSWER_SOURCES,
        citation_threshold=settings.KB_FACTCHECK_THRESHOLD,
        refusal_threshold=0.0,
        factcheck_policy=settings.KB_ANSWER_POLICY,
        style=AnswerStyle.PLAIN,
    )
