"""Conversation threads: started, renamed and deleted by their user, and the standalone question
a follow-up is searched and answered as (kb.answering.rewrite holds the prompt and the checks).

    thread = start_conversation(user=user, title=title_for(question))
    ask(user=user, question="And for contractors?", conversation=thread)
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.text import Truncator

from kb.answering import rewrite
from kb.models import Conversation, Question
from kb.selectors import latest_turns
from kb.services import audit
from kb.services.pre_search_generation import pre_search_generation

TITLE_CHARS = Conversation._meta.get_field("title").max_length
Rewrite = Question.Rewrite


class InvalidConversation(ValueError):
    """A title that cannot be used; the message says why."""


@dataclass(frozen=True)
class Standalone:
    """What a question is searched and answered as, and how it got that way."""

    text: str
    rewrite: Rewrite = Rewrite.NONE


def title_for(question: str) -> str:
    """A new thread's title: its first question, cut at a word."""
    return Truncator(" ".join(question.split())).chars(80)


def start_conversation(*, user, title: str) -> Conversation:
    return Conversation.objects.create(user=user, title=_valid_title(title))


def rename_conversation(conversation: Conversation, *, title: str) -> Conversation:
    conversation.title = _valid_title(title)
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


@transaction.atomic
def delete_conversation(conversation: Conversation, *, actor, request=None) -> None:
    """Deletes the thread and its questions (their answers stay: the cache may share them)."""
    questions = conversation.questions.count()
    audit.record(
        action="conversation_deleted", actor=actor, target=conversation, request=request, questions=questions
    )
    conversation.delete()


def _valid_title(title) -> str:
    title = " ".join(str(title).split()) if isinstance(title, str) else ""
    if not title:
        raise InvalidConversation("a conversation needs a title")
    if len(title) > TITLE_CHARS:
        raise InvalidConversation(f"a title has at most {TITLE_CHARS} characters")
    return title


def earlier_questions(conversation: Conversation) -> list[str]:
    """The last KB_REWRITE_TURNS questions of the thread as they were searched, oldest first: one
    indexed query, however long the thread."""
    return [question.searched for question in latest_turns(conversation, settings.KB_REWRITE_TURNS)]


def standalone(conversation: Conversation | None, question: str, *, language: str) -> Standalone:
    """`question` as a question that needs no thread (see `rewritten`), the way KB_REWRITE says."""
    if conversation is None:
        return Standalone(question)
    return rewritten(question, earlier_questions(conversation), language=language, method=settings.KB_REWRITE)


def rewritten(question: str, earlier: list[str], *, language: str, method: str) -> Standalone:
    """`question` after the `earlier` questions of its thread (oldest first): when it reads as
    dependent on them, rewritten by the engine (method "engine"), or by rules when the engine
    fails or its rewrite is turned down (method "rules" goes to them directly)."""
    if method == "off" or not earlier or not rewrite.depends_on_context(question):
        return Standalone(question)
    if method == "engine":
        if (written := _engine_rewrite(question, earlier, language)) is not None:
            return Standalone(written, Rewrite.ENGINE if written != question else Rewrite.NONE)
    joined = rewrite.by_rules(question, earlier)
    return Standalone(joined, Rewrite.RULES if joined != question else Rewrite.NONE)


def _engine_rewrite(question: str, earlier: list[str], language: str) -> str | None:
    messages = rewrite.rewrite_messages(question, earlier, language=language)
    reply = pre_search_generation(messages, max_tokens=settings.KB_REWRITE_MAX_TOKENS)
    return None if reply is None else rewrite.accept(reply, question, earlier)
