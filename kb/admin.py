"""The curation console: the Django admin, with every change written to the audit trail."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from kb.answering.sensitive_terms import Term
from kb.forms import UploadForm
from kb.models import (
    Answer,
    AnswerSentence,
    AuditEvent,
    Chunk,
    Citation,
    Collection,
    Document,
    DocumentVersion,
    Question,
    SensitiveTerm,
)
from kb.selectors import can_curate
from kb.services import audit
from kb.services.ingestion import UploadRejected, upload_document
from kb.services.sensitive_terms import TermImportError, import_terms_csv


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the application itself: viewable, never added, edited or deleted here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdmin(admin.ModelAdmin):
    """Sends the admin's own change log (add, change, delete) to the audit trail as well."""

    def log_addition(self, request, obj, message):
        audit.record(action="create", actor=request.user, target=obj, request=request, change=message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit.record(action="update", actor=request.user, target=obj, request=request, change=message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit.record(action="delete", actor=request.user, target=obj, request=request)
        return super().log_deletions(request, queryset)


@admin.register(Collection)
class CollectionAdmin(AuditedAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name", "description"]
    filter_horizontal = ["reader_groups", "curator_groups"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        upload = self.admin_site.admin_view(self.upload_view)
        return [path("<int:pk>/upload/", upload, name="kb_collection_upload"), *super().get_urls()]

    def upload_view(self, request, pk):
        """Several files at once into this collection; each becomes an ingestion job."""
        collection = get_object_or_404(Collection, pk=pk)
        if not can_curate(request.user, collection):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            queued, unchanged = 0, 0
            for file in form.cleaned_data["files"]:
                try:
                    result = upload_document(
                        collection=collection,
                        name=file.name,
                        content=file,
                        user=request.user,
                        request=request,
                    )
                except UploadRejected as error:
                    messages.error(request, f"{file.name}: {error}")
                    continue
                queued += result.created
                unchanged += not result.created
            messages.success(request, f"{queued} file(s) queued for ingestion, {unchanged} unchanged.")
            changelist = reverse("admin:kb_documentversion_changelist")
            return redirect(f"{changelist}?document__collection__id__exact={collection.pk}")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "collection": collection,
            "form": form,
            "title": f"Upload documents to {collection}",
        }
        return TemplateResponse(request, "admin/kb/collection/upload.html", context)


class DocumentVersionInline(admin.TabularInline):
    model = DocumentVersion
    fields = [
        "number",
        "original_name",
        "size",
        "job_state",
        "chunks_done",
        "chunks_total",
        "created_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Document)
class DocumentAdmin(AuditedAdmin):
    list_display = ["title", "collection", "status", "updated_at"]
    list_filter = ["status", "collection"]
    search_fields = ["title", "source"]
    readonly_fields = ["current_version", "created_by", "created_at", "updated_at"]
    inlines = [DocumentVersionInline]


@admin.register(DocumentVersion)
class DocumentVersionAdmin(AuditedAdmin):
    """Versions are immutable uploads: viewable here, created only by ingestion."""

    list_display = ["document", "number", "job_state", "chunks_done", "chunks_total", "error", "updated_at"]
    list_filter = ["job_state", "document__collection"]
    search_fields = ["document__title", "original_name", "sha256"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Chunk)
class ChunkAdmin(ReadOnlyAdmin):
    list_display = ["version", "ordinal", "page", "token_count", "language"]
    search_fields = ["text"]
    exclude = ["embedding"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only for everyone and visible to administrators only."""

    list_display = [
        "created_at",
        "actor_name",
        "action",
        "object_type",
        "object_repr",
        "ip_address",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_repr", "object_id"]
    date_hierarchy = "created_at"

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


# Users and groups decide who may read what, so their changes are audited too.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    pass


class SensitiveTermForm(forms.ModelForm):
    class Meta:
        model = SensitiveTerm
        fields = ["term", "category", "action"]

    def clean_term(self):
        term = self.cleaned_data["term"]
        try:
            Term(term)
        except ValueError as error:  # e.g. nothing but zero-width characters
            raise forms.ValidationError(str(error)) from None
        return term


class TermImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8, header row term,category,action; action is block, mask or flag (empty: flag).",
    )


@admin.register(SensitiveTerm)
class SensitiveTermAdmin(AuditedAdmin):
    """Terms questions and answers are screened for; every process uses a change within seconds."""

    form = SensitiveTermForm
    list_display = ["term", "category", "action", "updated_at"]
    list_filter = ["action", "category"]
    search_fields = ["term", "category"]

    def get_urls(self):
        import_csv = self.admin_site.admin_view(self.import_view)
        return [path("import/", import_csv, name="kb_sensitiveterm_import"), *super().get_urls()]

    def import_view(self, request):
        """Bulk import from a CSV file: every row, or none and the lines that are wrong."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TermImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = import_terms_csv(form.cleaned_data["file"], actor=request.user, request=request)
            except TermImportError as error:
                form.add_error("file", str(error))
            else:
                messages.success(
                    request,
                    f"Sensitive terms imported: {result.created} created, {result.updated} updated, "
                    f"{result.unchanged} unchanged.",
                )
                return redirect("admin:kb_sensitiveterm_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "title": "Import sensitive terms",
        }
        return TemplateResponse(request, "admin/kb/sensitiveterm/import.html", context)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class AnswerSentenceInline(ReadOnlyInline):
    model = AnswerSentence
    fields = ["ordinal", "text", "verdict", "support", "problems", "shown"]


class CitationInline(ReadOnlyInline):
    model = Citation
    fields = ["number", "title", "page", "document", "char_start", "char_end"]


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin):
    """What was answered, sentence by sentence with the fact-check verdicts, and what it cites."""

    list_display = ["created_at", "outcome", "language", "model", "first_token_ms", "generation_ms"]
    list_filter = ["outcome", "language"]
    search_fields = ["text", "generated_text"]
    fields = [
        "outcome",
        "text",
        "generated_text",
        "language",
        "model",
        "invalid_markers",
        "first_token_ms",
        "generation_ms",
        "detail",
        "created_at",
    ]
    inlines = [AnswerSentenceInline, CitationInline]


@admin.register(Question)
class QuestionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "text", "language", "cache_hit", "latency_ms"]
    list_filter = ["language", "cache_hit", "answer__outcome"]
    search_fields = ["text", "user__username"]
    fields = ["user", "text", "language", "collections", "answer", "cache_hit", "latency_ms", "created_at"]
