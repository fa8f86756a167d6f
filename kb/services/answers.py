"""Answering a user's question from the documents they may read, with checked citations.

    question = ask(user=user, question="How many days of leave carry over?", collections=["HR"])
    question.answer.outcome, question.answer.text, question.answer.sentences, question.answer.citations

The pipeline: normalise → safety (sensitive terms, prompt injection) → a follow-up in a
conversation made standalone (kb.services.conversations; shown through `on_search`) →
frequent-question cache → hybrid retrieval in the user's scopes → excerpts as numbered sources →
engine (streamed to `on_token`) → markers read and verified → fact-check per sentence → policy
(drop or flag what is not supported) → stored Answer → Question. When nothing is supported, or
nothing relevant was found, the answer says the documents do not contain it and lists the
closest sources. Every surface (API, staff UI, the `ask` and `evaluate` commands) calls `ask`.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction

from inference.client import EngineRequestRejected, EngineUnavailable, chat_stream, served_build
from kb.answering.citations import read_answer, render
from kb.answering.factcheck import CheckedSentence, check_sentences
from kb.answering.injection import find_injections
from kb.answering.policy import AnswerPolicy, combined_policy
from kb.answering.prompt import answer_messages
from kb.answering.sources import Source, question_terms, select_sources
from kb.ingestion.language import CHINESE, detect_language
from kb.models import Answer, AnswerSentence, Citation, Collection, Conversation, Question
from kb.presets import FactcheckPolicy
from kb.services import audit
from kb.services.connections import release_connection
from kb.services.conversations import Standalone, standalone
from kb.services.query_transforms import transformed_search
from kb.services.search import Result, chunks_for, search_scopes
from kb.services.sensitive_terms import screen_text, terms_version
from retrieval import cache
from retrieval.search import InvalidQuery, normalise_query

Outcome = Answer.Outcome
Verdict = AnswerSentence.Verdict

MESSAGES = {
    Outcome.NOT_FOUND: {
        "en": "The documents you can read do not contain an answer to this question.",
        CHINESE: "在您可以查阅的文档中没有找到这个问题的答案。",
    },
    Outcome.BLOCKED: {
        "en": "This question cannot be answered: it breaks a content rule of this knowledge base.",
        CHINESE: "无法回答这个问题：它违反了本知识库的内容规则。",
    },
    Outcome.ENGINE_UNAVAILABLE: {
        "en": "The answer engine is not available right now. These are the passages that match best.",
        CHINESE: "回答引擎暂时不可用。以下是最相关的段落。",
    },
}
# Outcomes that depend only on the question, the documents and the model, so they can be reused.
CACHEABLE_OUTCOMES = (Outcome.ANSWERED, Outcome.NOT_FOUND)
CONTROL_CHARACTERS = frozenset(chr(code) for code in range(32)) - {"\t", "\n", "\r"}


@dataclass(frozen=True)
class Generation:
    text: str
    first_token_ms: int | None
    generation_ms: int
    tokens: int


def ask(
    *,
    user,
    question: str,
    collections: list[str] | None = None,
    conversation: Conversation | None = None,
    on_token: Callable[[str], None] | None = None,
    on_search: Callable[[str], None] | None = None,
    request=None,
    use_cache: bool = True,
) -> Question:
    """Answer `question` for `user` from the collections they may read (the named ones, or all),
    as a follow-up in `conversation` (the user's own) when given; `on_search` gets a follow-up's
    rewrite before it is searched. `use_cache=False` skips the frequent-question cache (evaluation
    measures real answers). Raises InvalidQuery (UnknownCollection included) with a reason for a
    question that cannot be asked."""
    started = time.monotonic()
    text = normalise_question(question)
    if conversation is not None and conversation.user_id != user.pk:
        raise InvalidQuery("no such conversation")
    language = detect_language(text) or "en"
    scopes = search_scopes(user, collections)
    answer, cache_hit, searched = _answer_safely(
        text,
        scopes,
        language,
        user=user,
        request=request,
        conversation=conversation,
        on_token=on_token,
        on_search=on_search,
        use_cache=use_cache,
    )
    with transaction.atomic():
        asked = Question.objects.create(
            user=user,
            conversation=conversation,
            text=text,
            search_query=searched.text if searched.rewrite else "",
            rewrite=searched.rewrite,
            language=language,
            answer=answer,
            cache_hit=cache_hit,
            latency_ms=_ms_since(started),
        )
        asked.collections.set(scopes)
        if conversation is not None:
            conversation.save(update_fields=["updated_at"])  # the thread moves to the top of the list
        audit.record(
            action="question_asked", actor=user, target=asked, request=request, outcome=answer.outcome
        )
    return asked


def normalise_question(question) -> str:
    """The question as searched and stored; raises InvalidQuery for empty, overlong or binary input."""
    if isinstance(question, str) and CONTROL_CHARACTERS.intersection(question):
        raise InvalidQuery("the question contains control characters: send text, not binary data")
    return normalise_query(question)


def _answer_safely(
    text, scopes, language, *, user, request, conversation, on_token, on_search, use_cache
) -> tuple[Answer, bool, Standalone]:
    """The answer, whether it came from the cache, and what was searched."""
    unchanged = Standalone(text)
    policy = combined_policy(Collection.objects.filter(pk__in=scopes))
    screening = screen_text(text, actor=user, request=request, where="question", scopes=scopes)
    if screening.blocked:
        return _blocked(language, reason="sensitive_terms"), False, unchanged
    if injections := find_injections(text):
        audit.record(
            action="safety_block",
            actor=user,
            request=request,
            where="question",
            reason="prompt_injection",
            patterns=sorted({finding.pattern for finding in injections}),
        )
        return _blocked(language, reason="prompt_injection"), False, unchanged
    # Masked terms stay masked in the rewrite, the search and the prompt.
    searched = standalone(conversation, screening.text, language=language)
    if searched.rewrite and on_search is not None:
        on_search(searched.text)
    query = searched.text
    key = _cache_key(query, scopes, policy)
    cached_id = cache.get(key) if use_cache else None
    cached = Answer.objects.filter(pk=cached_id).first() if cached_id else None
    if cached is not None:
        return cached, True, searched
    answer = _answer(query, scopes, language, policy, user=user, request=request, on_token=on_token)
    if answer.outcome in CACHEABLE_OUTCOMES:
        cache.put(key, answer.pk)
    return answer, False, searched


def _cache_key(query: str, scopes: list[int], policy: AnswerPolicy) -> str:
    """Same question, same scopes at the same index versions, same model, settings (the site's and
    the collections'), and term list."""
    parameters = {
        "question": query.casefold(),
        # The model and the build serving it, not the replicas: adding an engine keeps the cached
        # answers, swapping in another build of the model does not.
        "engine": [settings.KB_ENGINE_MODEL, served_build(settings.ENGINE_URLS, settings.KB_ENGINE_MODEL)],
        "answering": [
            settings.KB_ANSWER_SOURCE_CHARS,
            settings.KB_ANSWER_MAX_TOKENS,
            settings.KB_ANSWER_MIN_QUESTION_COVERAGE,
            settings.KB_FACTCHECK_MIN_QUESTION_COVERAGE,
            settings.KB_QUERY_TRANSFORMS,
        ],
        "policy": asdict(policy),
        "sensitive_terms": terms_version(),
    }
    return cache.result_key(parameters, scopes, kind="answer")


def _answer(query, scopes, language, policy: AnswerPolicy, *, user, request, on_token) -> Answer:
    results = _retrieve(query, scopes, policy.sources, user=user, request=request)
    if not results:
        return _not_found(language, results, reason="nothing_found")
    terms = question_terms(query, scopes)
    sources = select_sources(
        [result.chunk for result in results],
        terms,
        max_chars=settings.KB_ANSWER_SOURCE_CHARS,
        min_coverage=settings.KB_ANSWER_MIN_QUESTION_COVERAGE,
    )
    if not sources:
        return _not_found(language, results, reason="nothing_about_the_question")
    try:
        generation = _generate(
            answer_messages(query, sources, language=language, style=policy.style), on_token
        )
    except (EngineUnavailable, EngineRequestRejected) as error:
        return _engine_unavailable(language, results, error)
    screening = screen_text(generation.text, actor=user, request=request, where="answer", scopes=scopes)
    if screening.blocked:
        return _blocked(language, reason="sensitive_terms", generation=generation)
    draft = read_answer(screening.text, valid_numbers={source.number for source in sources})
    checked = check_sentences(
        draft.sentences, sources, question=query, terms=terms, threshold=policy.citation_threshold
    )
    supported = sum(sentence.verdict == Verdict.SUPPORTED for sentence in checked)
    if reason := policy.refusal(supported, len(checked)):
        return _not_found(language, results, reason=reason, generation=generation, checked=checked)
    return _store(
        Outcome.ANSWERED,
        language=language,
        policy=policy,
        generation=generation,
        sources=sources,
        checked=checked,
        invalid_markers=draft.invalid_markers,
    )


def _retrieve(query, scopes, depth: int, *, user, request) -> list[Result]:
    """The best chunks for the question that share a search term with it, less any that carries
    instructions (prompt injection): such a passage never reaches the generator, and the event is in
    the audit trail. Dense search always returns its nearest passages, however far; one that shares
    no word with the question is not evidence a small generator can answer from."""
    hits = transformed_search(query, scopes=scopes, k=depth, transforms=settings.KB_QUERY_TRANSFORMS)
    results = chunks_for(hits, scopes)
    safe = []
    for result in results:
        if result.bm25_rank is None:
            continue
        if findings := find_injections(result.chunk.text):
            audit.record(
                action="safety_block",
                actor=user,
                target=result.chunk,
                request=request,
                where="passage",
                reason="prompt_injection",
                patterns=sorted({finding.pattern for finding in findings}),
            )
        else:
            safe.append(result)
    return safe


def _generate(messages: list[dict[str, str]], on_token: Callable[[str], None] | None) -> Generation:
    """The generator's reply, streamed to `on_token`; raises EngineUnavailable past KB_ANSWER_TIMEOUT
    seconds, so a slow engine never holds a user's request for good."""
    started = time.monotonic()
    deadline = started + settings.KB_ANSWER_TIMEOUT
    first_token_ms, parts = None, []
    release_connection()
    stream = chat_stream(
        settings.ENGINE_URLS,
        messages,
        model=settings.KB_ENGINE_MODEL,
        max_tokens=settings.KB_ANSWER_MAX_TOKENS,
        temperature=0.0,
        timeout=min(settings.ENGINE_TIMEOUT, settings.KB_ANSWER_TIMEOUT),
    )
    try:
        for delta in stream:
            if first_token_ms is None:
                first_token_ms = _ms_since(started)
            parts.append(delta)
            if on_token is not None:
                on_token(delta)
            if time.monotonic() > deadline:
                raise EngineUnavailable(f"the engine did not finish within {settings.KB_ANSWER_TIMEOUT:g} s")
    finally:
        stream.close()  # closes the connection: the engine cancels the rest of the answer
    return Generation("".join(parts), first_token_ms, _ms_since(started), len(parts))


def _shown(sentence: CheckedSentence, policy: AnswerPolicy) -> bool:
    return sentence.verdict == Verdict.SUPPORTED or policy.factcheck_policy == FactcheckPolicy.FLAG


def _not_found(language, results, *, reason, generation=None, checked=()) -> Answer:
    return _store(
        Outcome.NOT_FOUND,
        language=language,
        generation=generation,
        checked=checked,
        detail={"reason": reason, "closest_sources": _closest(results)},
    )


def _blocked(language, *, reason, generation=None) -> Answer:
    return _store(Outcome.BLOCKED, language=language, generation=generation, detail={"reason": reason})


def _engine_unavailable(language, results, error) -> Answer:
    return _store(
        Outcome.ENGINE_UNAVAILABLE,
        language=language,
        detail={"reason": str(error), "closest_sources": _closest(results)},
    )


def _closest(results: list[Result]) -> list[dict]:
    return [
        {"chunk": result.chunk.pk, "title": result.chunk.version.document.title, "page": result.chunk.page}
        for result in results
    ]


@transaction.atomic
def _store(
    outcome,
    *,
    language: str,
    policy: AnswerPolicy | None = None,
    generation: Generation | None = None,
    sources: list[Source] = (),
    checked=(),
    invalid_markers: int = 0,
    detail: dict | None = None,
) -> Answer:
    """The answer with its sentences and citations. Citations are numbered 1, 2… in the order the
    shown sentences first cite them; sources no shown sentence cites are not citations."""
    answer = Answer.objects.create(
        outcome=outcome,
        language=language,
        generated_text=generation.text if generation else "",
        model=settings.KB_ENGINE_MODEL if generation else "",
        invalid_markers=invalid_markers,
        first_token_ms=generation.first_token_ms if generation else None,
        generation_ms=generation.generation_ms if generation else None,
        generated_tokens=generation.tokens if generation else 0,
        detail=detail or {},
    )
    by_number = {source.number: source for source in sources}
    citations: dict[int, Citation] = {}
    rendered = []
    for ordinal, sentence in enumerate(checked):
        shown = outcome == Outcome.ANSWERED and _shown(sentence, policy)
        row = AnswerSentence.objects.create(
            answer=answer,
            ordinal=ordinal,
            text=sentence.text,
            verdict=sentence.verdict,
            support=sentence.support,
            problems=sentence.problems,
            shown=shown,
        )
        if not shown:
            continue
        for number in sentence.citations:
            if number not in citations:
                citations[number] = _citation(answer, len(citations) + 1, by_number[number])
        row.citations.set([citations[number] for number in sentence.citations])
        rendered.append((sentence.text, [citations[number].number for number in sentence.citations]))
    answer.text = render(rendered, language=language) if rendered else MESSAGES[outcome][_language(language)]
    answer.save(update_fields=["text"])
    return answer


def _citation(answer: Answer, number: int, source: Source) -> Citation:
    version = source.chunk.version
    return Citation.objects.create(
        answer=answer,
        number=number,
        chunk=source.chunk,
        version=version,
        document=version.document,
        collection=version.document.collection,
        title=source.title,
        page=source.page,
        char_start=source.char_start,
        char_end=source.char_end,
    )


def _language(language: str) -> str:
    return language if language == CHINESE else "en"


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
