"""Sensitive terms in the running application: the matcher every process screens with, screening
with its audit trail, and the bulk import from CSV.

Each process keeps one TermMatcher built from the SensitiveTerm table. A version token in the cache
(Redis) changes whenever a term changes (terms_changed(), on commit); each process reads the token
at most every KB_SENSITIVE_TERMS_REFRESH_SECONDS and rebuilds its matcher when the token differs
from the one it was built at. An edit in the console or an import is therefore in force in every web
and worker process within seconds, with no restart. While one thread rebuilds, the others keep
screening with the previous matcher.
"""

import csv
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Literal

from django.conf import settings
from django.db import transaction

from kb.answering.sensitive_terms import Action, Screening, Term, TermMatcher, term_key
from kb.models import Collection, SensitiveTerm
from kb.services import audit
from retrieval import cache as retrieval_cache

logger = logging.getLogger(__name__)

VERSION_KEY = "safety:terms-version"
IMPORT_BATCH = 5000  # rows per INSERT … ON CONFLICT statement
CSV_COLUMNS = ["term", "category", "action"]
MAX_REPORTED_PROBLEMS = 20  # a file with thousands of bad lines gets the first ones, not a wall of text
ACTIONS = [action.value for action in Action]
TERM_MAX_LENGTH = SensitiveTerm._meta.get_field("term").max_length
CATEGORY_MAX_LENGTH = SensitiveTerm._meta.get_field("category").max_length


@dataclass
class _ProcessMatcher:
    matcher: TermMatcher | None = None
    version: str | None = None
    checked_at: float = float("-inf")


_process = _ProcessMatcher()
_rebuilding = threading.Lock()


def terms_changed() -> None:
    """Tell every process to rebuild its matcher, once the current transaction commits."""
    transaction.on_commit(lambda: retrieval_cache.renew_tokens({VERSION_KEY}))


def terms_version() -> str:
    """The token of the current term list: it changes whenever a term changes (once committed), so
    anything computed from screened text (a cached answer) can be keyed by it. While Redis is
    unreachable every call gets a new token, so each check rebuilds the matcher from the table."""
    return retrieval_cache.tokens([VERSION_KEY])[0]


def current_matcher() -> TermMatcher:
    """This process's matcher over all sensitive terms, at most KB_SENSITIVE_TERMS_REFRESH_SECONDS
    (default 2) behind the database."""
    interval = getattr(settings, "KB_SENSITIVE_TERMS_REFRESH_SECONDS", 2)
    if _process.matcher is not None and time.monotonic() - _process.checked_at < interval:
        return _process.matcher
    # The first build waits; later ones happen in one thread while the others use the old matcher.
    if not _rebuilding.acquire(blocking=_process.matcher is None):
        return _process.matcher
    try:
        checked_at = time.monotonic()
        version = terms_version()  # read before the table, so a change in between is seen next time
        if _process.matcher is None or version != _process.version:
            _process.matcher, _process.version = TermMatcher(_stored_terms()), version
        _process.checked_at = checked_at
        return _process.matcher
    finally:
        _rebuilding.release()


def _stored_terms() -> Iterator[Term]:
    rows = SensitiveTerm.objects.values_list("term", "category", "action").order_by()
    for text, category, action in rows.iterator(chunk_size=IMPORT_BATCH):
        try:
            yield Term(text, category, action)
        except ValueError as error:  # written around the console and the import: skip it, do not stop
            logger.warning("sensitive term %r (%s) is ignored: %s", text, action, error)


def screen_text(
    text: str,
    *,
    actor,
    request=None,
    where: Literal["question", "answer"] = "question",
    scopes: list[int] | None = None,
) -> Screening:
    """Screen a question or an answer asked in the collections `scopes` with the current terms. A
    category is a list: one that collections name in their sensitive-term lists (the legal,
    finance and medical presets each name one) screens only texts asked in them; any other term
    screens every text (and all of them do without `scopes`). A blocked text is audited
    (`safety_block`: where, the reason "sensitive_terms", the blocking terms and their categories;
    never the rest of the text)."""
    if where not in ("question", "answer"):
        raise ValueError(f"where must be 'question' or 'answer', not {where!r}")
    screening = current_matcher().screen(text, applies=None if scopes is None else _lists_for(scopes))
    if screening.blocked:
        blocking = screening.blocking
        audit.record(
            action="safety_block",
            actor=actor,
            request=request,
            where=where,
            reason="sensitive_terms",
            terms=sorted({match.term for match in blocking}),
            categories=sorted({match.category for match in blocking}),
        )
    return screening


def _lists_for(scopes: list[int]) -> Callable[[str], bool]:
    """Whether a term of a category screens texts asked in `scopes`."""
    claimed, named = set(), set()
    for pk, lists in Collection.objects.exclude(sensitive_term_lists=[]).values_list(
        "pk", "sensitive_term_lists"
    ):
        folded = {name.casefold() for name in lists}
        claimed |= folded
        if pk in scopes:
            named |= folded
    return lambda category: category.casefold() not in claimed or category.casefold() in named


class TermImportError(Exception):
    """A CSV file that cannot be imported; `problems` are (line number, what is wrong)."""

    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        shown = "; ".join(f"line {line}: {problem}" for line, problem in problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


def import_terms_csv(file: IO, *, actor=None, request=None, actor_name: str = "") -> ImportResult:
    """Import sensitive terms from a CSV file (bytes or text; UTF-8 with or without BOM) with the
    header row term,category,action. An empty action is "flag". Existing terms get the file's
    category and action. Every row is checked first: any problem raises TermImportError naming the
    lines, and nothing is written. Otherwise all rows are written in one transaction, every process
    picks them up within seconds, and one `sensitive_terms_import` audit event is recorded (by
    `actor`, or `actor_name` where no user is signed in)."""
    terms = _parse_terms_csv(file.read())
    with transaction.atomic():
        created, updated = _write_terms(terms)
        terms_changed()
        result = ImportResult(
            created=len(created), updated=len(updated), unchanged=len(terms) - len(created) - len(updated)
        )
        audit.record(
            action="sensitive_terms_import",
            actor=actor,
            actor_name=actor_name,
            request=request,
            file=getattr(file, "name", ""),
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
        )
    return result


def _parse_terms_csv(content: bytes | str) -> list[Term]:
    text = _decoded(content) if isinstance(content, bytes) else content.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[tuple[int, str]] = []
    terms: list[Term] = []
    first_line: dict[str, int] = {}  # term key -> the line the term is first on
    line = 1  # the line the next row starts on (a quoted field may span several)
    try:
        _check_header(next(reader, None))
        line = reader.line_num + 1
        for row in reader:
            if any(field.strip() for field in row):  # blank lines are allowed
                problem, term = _term_from_row(row)
                key = term_key(term.text) if term is not None else None
                if key in first_line:
                    problem = f"the term {term.text!r} is already on line {first_line[key]}"
                if problem is not None:
                    problems.append((line, problem))
                else:
                    first_line[key] = line
                    terms.append(term)
            line = reader.line_num + 1
    except csv.Error as error:
        problems.append((line, f"this is not valid CSV ({error})"))
    if problems:
        raise TermImportError(problems)
    return terms


def _check_header(header: list[str] | None) -> None:
    if header is None:
        raise TermImportError([(1, "the file is empty; the first line must be term,category,action")])
    if [column.strip().lower() for column in header] != CSV_COLUMNS:
        raise TermImportError([(1, f"the header must be term,category,action, not {','.join(header)}")])


def _decoded(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise TermImportError([(line, "the file is not UTF-8 text; save it as CSV UTF-8")]) from None


def _term_from_row(row: list[str]) -> tuple[str | None, Term | None]:
    """(problem, None) for a bad row, else (None, the term)."""
    if len(row) != len(CSV_COLUMNS):
        return f"expected 3 columns (term,category,action), found {len(row)}", None
    text, category, action = (field.strip() for field in row)
    action = action.lower() or Action.FLAG
    if "\x00" in text + category:
        return "the line holds a NUL character", None
    if len(text) > TERM_MAX_LENGTH:
        return f"the term is longer than {TERM_MAX_LENGTH} characters", None
    if len(category) > CATEGORY_MAX_LENGTH:
        return f"the category is longer than {CATEGORY_MAX_LENGTH} characters", None
    if action not in ACTIONS:
        return f"unknown action {action!r} (expected block, mask or flag)", None
    try:
        return None, Term(text, category, action)
    except ValueError:
        return "the term is empty", None


def _write_terms(terms: list[Term]) -> tuple[list[Term], list[Term]]:
    """Insert new terms and update changed ones; returns (created, updated)."""
    created, updated = [], []
    for start in range(0, len(terms), IMPORT_BATCH):
        batch = terms[start : start + IMPORT_BATCH]
        stored = {
            text: (category, action)
            for text, category, action in SensitiveTerm.objects.filter(
                term__in=[term.text for term in batch]
            ).values_list("term", "category", "action")
        }
        for term in batch:
            if term.text not in stored:
                created.append(term)
            elif stored[term.text] != (term.category, term.action):
                updated.append(term)
    SensitiveTerm.objects.bulk_create(
        [
            SensitiveTerm(term=term.text, category=term.category, action=term.action)
            for term in created + updated
        ],
        batch_size=IMPORT_BATCH,
        update_conflicts=True,
        unique_fields=["term"],
        update_fields=["category", "action", "updated_at"],
    )
    return created, updated
