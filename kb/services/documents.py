"""Changes curators make to documents outside ingestion: delete, hide and show again; and
collections deleted with all their documents.

A hidden document stays stored with its versions, but its passages move to a search scope that
no collection has, so no search, answer or statistic counts it until it is shown again; the move
happens in one transaction (retrieval.index.move_passages), with the cache versions of both scopes.
"""

from django.db import transaction

from kb.models import Chunk, Collection, Document
from kb.services import audit
from retrieval import index

# Collections are scopes 1, 2, …; nobody is ever given scope 0.
HIDDEN_SCOPE = 0


def search_scope(document: Document) -> int:
    """The scope a document's passages are indexed under."""
    return HIDDEN_SCOPE if document.hidden else document.collection_id


@transaction.atomic
def delete_document(document: Document, *, user, request=None) -> None:
    """Delete a document with all its versions; its passages leave the search index in the same
    transaction (kb.signals), so no later search or answer finds it."""
    audit.record(action="delete", actor=user, target=document, request=request)
    document.delete()


@transaction.atomic
def delete_collection(collection: Collection) -> None:
    """Delete a collection with its documents (the caller records it in the audit trail).

    Its passages leave the index first, all at once: a scope emptied drops its posting blocks
    without reading them, where the cascade alone would rewrite those blocks once per document
    (kb.signals; Django signals the documents before their collection). The documents' own
    receivers then find nothing left to remove.
    """
    index.remove_passages(
        Chunk.objects.filter(version__document__collection=collection).values_list("id", flat=True)
    )
    collection.delete()


@transaction.atomic
def set_hidden(document: Document, hidden: bool, *, user, request=None, reason: str = "") -> None:
    """Hide a document from every search and answer, or show it again."""
    document = Document.objects.select_for_update().get(pk=document.pk)
    if document.hidden == hidden:
        return
    document.hidden = hidden
    document.save(update_fields=["hidden", "updated_at"])
    index.move_passages(
        Chunk.objects.filter(version__document=document).values_list("id", flat=True), search_scope(document)
    )
    audit.record(
        action="hide" if hidden else "show", actor=user, target=document, request=request, reason=reason
    )
