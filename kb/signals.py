"""Receivers for events Django raises itself: sign-ins, documents moved and deleted, sensitive terms
and the collections' term lists changed."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from kb.models import Chunk, Collection, Document, SensitiveTerm
from kb.services import audit, sign_in
from kb.services.sensitive_terms import terms_changed
from retrieval import index


@receiver(user_logged_in)
def audit_sign_in(sender, request, user, **kwargs):
    audit.record(action="sign_in", actor=user, target=user, request=request)
    sign_in.record_success(user.get_username())


@receiver(user_login_failed)
def audit_failed_sign_in(sender, credentials, request=None, **kwargs):
    # Only the user name is kept; the password Django passes along is never stored.
    username = str(credentials.get("username", ""))
    audit.record(action="sign_in_failed", actor_name=username[:150], request=request)
    sign_in.record_failure(username, request=request)


@receiver(pre_delete, sender=Document)
def unindex_deleted_document(sender, instance, **kwargs):
    """However a document goes (the console, a cascade from its collection), its passages leave
    the search index in the same transaction, so later searches and statistics never count it."""
    index.remove_passages(Chunk.objects.filter(version__document=instance).values_list("id", flat=True))


@receiver(pre_save, sender=Document)
def rescope_moved_document(sender, instance, **kwargs):
    """A document moved to another collection is searched with that collection's readers, and
    counted in its statistics, from the same transaction on (a hidden one stays hidden)."""
    if instance.pk is None:
        return
    before = Document.objects.filter(pk=instance.pk).values_list("collection_id", flat=True).first()
    if before is not None and before != instance.collection_id and not instance.hidden:
        index.move_passages(
            Chunk.objects.filter(version__document=instance).values_list("id", flat=True),
            instance.collection_id,
        )


@receiver(post_save, sender=SensitiveTerm)
@receiver(post_delete, sender=SensitiveTerm)
def reload_sensitive_terms(sender, **kwargs):
    """A term added, edited or deleted one by one (the console, a script) is screened for in every
    process within seconds of the commit. Bulk imports call terms_changed() themselves."""
    terms_changed()


@receiver(pre_save, sender=Collection)
def reload_changed_term_lists(sender, instance, **kwargs):
    """Which terms screen which collection changes with any collection's term lists (a list named
    by one screens only there): the matchers are rebuilt and cached answers screened again."""
    before = Collection.objects.filter(pk=instance.pk).values_list("sensitive_term_lists", flat=True).first()
    if (before or []) != instance.sensitive_term_lists:
        terms_changed()


@receiver(post_delete, sender=Collection)
def reload_released_term_lists(sender, instance, **kwargs):
    if instance.sensitive_term_lists:
        terms_changed()
