"""Forms shared by the admin console and the staff pages."""

from django import forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one <input type=file multiple>."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(file, initial) for file in files if file]


class UploadForm(forms.Form):
    # Empty files pass here so that ingestion refuses them with its own reason, as for the API.
    files = MultipleFileField(
        allow_empty_file=True, help_text="PDF, Word, PowerPoint, Excel, HTML, Markdown or text files."
    )
