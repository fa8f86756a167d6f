"""One module per document format. Each `extract_*` function feeds a `DocumentBuilder` in reading
order and returns the title found in the document's metadata ("" when there is none)."""
