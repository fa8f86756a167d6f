"""The curation console: the Django admin, with every change written to the audit trail."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from kb.answering.sensitive_terms import Term
from kb.auth import ConsoleSignInForm
from kb.forms import UploadForm
from kb.models import (
    Answer,
    AnswerSentence,
    ApiToken,
    AuditEvent,
    Chunk,
    Citation,
    Collection,
    Document,
    DocumentVersion,
    Question,
    SensitiveTerm,
)
from kb.presets import apply_preset
from kb.selectors import can_curate, curated_collections
from kb.services import audit
from kb.services.audit import audit_csv_rows
from kb.services.documents import delete_collection, set_hidden
from kb.services.ingestion import UploadRejected, reindex_document, upload_document
from kb.services.rate_limits import RateLimited, consume
from kb.services.sensitive_terms import TermImportError, import_terms_csv
from kb.services.tokens import assign_new_key

admin.site.site_header = admin.site.site_title = "Knowledge base console"
admin.site.login_form = ConsoleSignInForm
admin.site.index_title = "Curation"


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


class SuperuserWrites:
    """Rows whose changes could widen someone's access: changed by administrators only."""

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


class SuperuserOnly:
    """For what could widen someone's access or show who did what: administrators only."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


class CuratedAdmin(AuditedAdmin):
    """Curators work in the console on the collections they curate and what is in them, and see
    nothing else; administrators see everything. `collection` is the lookup from a row to its
    collection. Who reads or curates a collection is for administrators alone to change."""

    collection = "collection"

    def _curated_collections(self, request):
        return curated_collections(request.user)

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        return rows.filter(**{f"{self.collection}__in": self._curated_collections(request)})

    def has_module_permission(self, request):
        user = request.user
        return user.is_active and (
            user.is_superuser or user.is_staff and self._curated_collections(request).exists()
        )

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_change_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request):
        return False  # documents come from uploads, collections from administrators

    def get_deleted_objects(self, objs, request):
        # Versions and chunks are never deleted on their own (their admins refuse it), but they go
        # with their document or collection: that refusal must not block deleting those.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        contents = {str(DocumentVersion._meta.verbose_name), str(Chunk._meta.verbose_name)}
        return deleted, counts, {name for name in perms_needed if str(name) not in contents}, protected

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Collection:
            # A document moves only between collections its curator curates.
            kwargs["queryset"] = self._curated_collections(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Collection)
class CollectionAdmin(CuratedAdmin):
    """Administrators create collections (choosing a preset) and decide who reads and curates
    them; curators edit how their collections are chunked, searched and answered."""

    collection = "pk"
    list_display = ["name", "preset", "created_at"]
    list_filter = ["preset"]
    search_fields = ["name", "description"]
    filter_horizontal = ["reader_groups", "curator_groups"]
    add_fieldsets = [
        (None, {"fields": ["name", "description", "preset"]}),
        ("Access", {"fields": ["reader_groups", "curator_groups"]}),
        ("Quotas", {"fields": ["max_documents", "max_bytes"]}),
    ]
    fieldsets = [
        *add_fieldsets,
        ("Chunking", {"fields": ["chunk_window", "chunk_overlap"]}),
        (
            "Answers",
            {
                "fields": [
                    "answer_sources",
                    "citation_threshold",
                    "refusal_threshold",
                    "factcheck_policy",
                    "answer_style",
                    "disclaimer",
                    "sensitive_term_lists",
                ]
            },
        ),
        ("History", {"fields": ["created_by", "created_at"]}),
    ]
    # Who may read, how much may be stored, and which term lists apply (naming a list takes it
    # away from every other collection) are for administrators.
    administrator_fields = [
        "name",
        "reader_groups",
        "curator_groups",
        "max_documents",
        "max_bytes",
        "sensitive_term_lists",
    ]

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ["created_by", "created_at"]
        if obj is not None:
            readonly.append("preset")  # chosen once; the settings it filled in are edited instead
        if not request.user.is_superuser:
            readonly += self.administrator_fields
        return readonly

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def delete_model(self, request, obj):
        delete_collection(obj)

    def delete_queryset(self, request, queryset):
        for collection in queryset:
            delete_collection(collection)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            apply_preset(obj, obj.preset)
        super().save_model(request, obj, form, change)

    def get_urls(self):
        upload = self.admin_site.admin_view(self.upload_view)
        jobs = self.admin_site.admin_view(self.jobs_view)
        return [
            path("<int:pk>/upload/", upload, name="kb_collection_upload"),
            path("<int:pk>/jobs/", jobs, name="kb_collection_jobs"),
            *super().get_urls(),
        ]

    def _curated(self, request, pk) -> Collection:
        collection = get_object_or_404(Collection, pk=pk)
        if not can_curate(request.user, collection):
            raise PermissionDenied
        return collection

    def upload_view(self, request, pk):
        """Several files at once into this collection; each becomes an ingestion job. The page's
        script sends files one by one (Accept: application/json) and follows their jobs live."""
        collection = self._curated(request, pk)
        form = UploadForm(request.POST or None, request.FILES or None)
        wants_json = "application/json" in request.headers.get("Accept", "")
        if request.method == "POST" and form.is_valid():
            results = [self._upload(request, collection, file) for file in form.cleaned_data["files"]]
            if wants_json:
                return JsonResponse({"results": results})
            for result in results:
                if result["error"]:
                    messages.error(request, f"{result['name']}: {result['error']}")
            queued = sum(1 for result in results if result["created"])
            unchanged = sum(1 for result in results if result["job"] and not result["created"])
            messages.success(request, f"{queued} file(s) queued for ingestion, {unchanged} unchanged.")
            changelist = reverse("admin:kb_documentversion_changelist")
            return redirect(f"{changelist}?document__collection__id__exact={collection.pk}")
        if request.method == "POST" and wants_json:
            return JsonResponse({"error": " ".join(form.errors.get("files", ["no file"]))}, status=400)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "collection": collection,
            "form": form,
            "title": f"Upload documents to {collection}",
        }
        return TemplateResponse(request, "admin/kb/collection/upload.html", context)

    @staticmethod
    def _upload(request, collection, file) -> dict:
        try:
            consume("upload", request)
            result = upload_document(
                collection=collection, name=file.name, content=file, user=request.user, request=request
            )
        except (UploadRejected, RateLimited) as error:
            return {"name": file.name, "job": None, "created": False, "error": str(error)}
        return {"name": file.name, "job": result.version.pk, "created": result.created, "error": ""}

    def jobs_view(self, request, pk):
        """State and progress of this collection's jobs named in ?ids=1,2,3, for the upload page."""
        collection = self._curated(request, pk)
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.isdigit()][:500]
        versions = DocumentVersion.objects.filter(document__collection=collection, pk__in=ids)
        jobs = {
            version.pk: {
                "state": version.job_state,
                "label": version.get_job_state_display(),
                "chunks_done": version.chunks_done,
                "chunks_total": version.chunks_total,
                "error": version.error,
            }
            for version in versions
        }
        return JsonResponse({"jobs": jobs})


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
class DocumentAdmin(CuratedAdmin):
    list_display = ["title", "collection", "status", "hidden", "chunk_browser", "updated_at"]
    list_filter = ["status", "hidden", ("collection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "source"]
    readonly_fields = ["current_version", "hidden", "chunk_browser", "created_by", "created_at", "updated_at"]
    inlines = [DocumentVersionInline]  # the version history, each with its job
    actions = ["reindex", "hide", "show"]

    @admin.display(description="Chunks")
    def chunk_browser(self, document):
        url = reverse("admin:kb_chunk_changelist") + f"?version__document__id__exact={document.pk}"
        return format_html(
            '<a href="{}">{} chunks</a>', url, Chunk.objects.filter(version__document=document).count()
        )

    @admin.action(description="Re-index the selected documents (parse, chunk and embed again)")
    def reindex(self, request, queryset):
        for document in queryset:  # get_queryset's: only documents the user curates
            try:
                reindex_document(document, user=request.user, request=request)
            except UploadRejected as error:
                messages.error(request, f"{document}: {error}")
        messages.success(
            request, "Re-indexing queued; searches use the current chunks until the new ones are in."
        )

    @admin.action(description="Hide the selected documents from every search and answer")
    def hide(self, request, queryset):
        for document in queryset:
            set_hidden(document, True, user=request.user, request=request)

    @admin.action(description="Show the selected hidden documents again")
    def show(self, request, queryset):
        for document in queryset:
            set_hidden(document, False, user=request.user, request=request)


@admin.register(DocumentVersion)
class DocumentVersionAdmin(CuratedAdmin):
    """Versions are immutable uploads: viewable here, created only by ingestion."""

    list_display = ["document", "number", "job_state", "chunks_done", "chunks_total", "error", "updated_at"]
    collection = "document__collection"
    list_filter = ["job_state", ("document__collection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["document__title", "original_name", "sha256"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a version goes with its document, never alone


@admin.register(Chunk)
class ChunkAdmin(CuratedAdmin):
    """The chunk browser: what ingestion made of a document, passage by passage (read-only)."""

    collection = "version__document__collection"

    list_display = ["ordinal", "excerpt", "page", "token_count", "language", "entity_list", "version"]
    list_filter = ["language", ("version__document__collection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["text", "version__document__title"]
    list_select_related = ["version__document"]
    exclude = ["embedding"]
    ordering = ["version", "ordinal"]

    class Media:
        css = {"all": ["kb/console.css"]}

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "version__document__id__exact" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="Text")
    def excerpt(self, chunk):
        return chunk.text[:240] + ("…" if len(chunk.text) > 240 else "")

    @admin.display(description="Entities")
    def entity_list(self, chunk):
        return ", ".join(sorted({str(entity.get("text", entity)) for entity in chunk.entities}))[:200]


@admin.register(AuditEvent)
class AuditEventAdmin(SuperuserOnly, ReadOnlyAdmin):
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
    change_list_template = "admin/kb/auditevent/change_list.html"

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", export, name="kb_auditevent_export"), *super().get_urls()]

    def export_csv(self, request):
        """The events the list shows (same filters, search and dates), every page, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        events = self.get_changelist_instance(request).get_queryset(request)
        response = StreamingHttpResponse(
            audit_csv_rows(events.iterator(chunk_size=2000)), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response


@admin.register(ApiToken)
class ApiTokenAdmin(SuperuserOnly, SuperuserWrites, AuditedAdmin):
    """REST API tokens. The key is shown once, after the token is created; deleting revokes it."""

    list_display = ["name", "user", "prefix", "read_only", "created_at", "last_used_at"]
    list_filter = ["read_only"]
    search_fields = ["name", "user__username", "prefix"]
    fields = ["user", "name", "read_only", "collections", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    filter_horizontal = ["collections"]

    def save_model(self, request, obj, form, change):
        if not change:
            key = assign_new_key(obj)
            messages.warning(request, f"The token's key, shown only now — copy it: {key}")
        super().save_model(request, obj, form, change)


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
