import pytest

from kb.ingestion import CorruptDocument, EmptyDocument, parse_document
from tests.ingestion.invariants import assert_well_formed

PAGE = """<!DOCTYPE html>
<html><head><title>Travel policy – Intranet</title><style>p { color: red }</style>
<script>var tracking = "do not index";</script></head>
<body>
<header><a href="/">Intranet home</a></header>
<nav><ul><li>Menu item</li></ul></nav>
<h1>Travel   policy</h1>
<p>Book trains for trips
under <b>500 km</b>.<br>Flights need approval.</p>
<h2>Allowances</h2>
<table><thead><tr><th>City</th><th>Per day</th></tr></thead>
<tbody><tr><td>Paris</td><td>120&nbsp;€</td></tr><tr><td>北京</td><td>800 元</td></tr></tbody></table>
<pre>code   keeps
   its spaces</pre>
<aside>Related links</aside>
<footer>© Example Corp</footer>
</body></html>"""


def test_main_text_keeps_headings_paragraphs_and_tables_without_boilerplate():
    document = parse_document(PAGE.encode())

    assert document.mime == "text/html"
    assert document.text == (
        "Travel policy\n\nBook trains for trips under 500 km.\nFlights need approval.\n\n"
        "Allowances\n\nCity | Per day\nParis | 120 €\n北京 | 800 元\n\ncode   keeps\n   its spaces"
    )
    assert [(h.level, h.heading_text) for h in document.headings] == [(1, "Travel policy"), (2, "Allowances")]
    assert document.title == "Travel policy – Intranet"
    assert_well_formed(document)


def test_main_element_is_the_content_when_present():
    page = "<html><body><div>Site banner</div><main><h2>Only this</h2><p>Body</p></main></body></html>"

    assert parse_document(page.encode()).text == "Only this\n\nBody"


def test_article_header_is_kept_because_it_holds_the_title():
    page = "<html><body><article><header><h1>Post</h1></header><p>Text</p></article></body></html>"

    assert parse_document(page.encode()).text == "Post\n\nText"


def test_html_is_recognised_by_content_even_under_a_txt_name():
    document = parse_document(b"<!doctype html><html><body><p>Hello</p></body></html>", filename="notes.txt")

    assert document.mime == "text/html"
    assert document.text == "Hello"


def test_xhtml_with_xml_declaration_is_read():
    page = '<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body><p>X</p></body></html>'

    assert parse_document(page.encode()).text == "X"


def test_run_of_comments_before_the_markup_is_sniffed_in_linear_time():
    document = parse_document(b"<!---->" * 500 + b"<html><body><p>After comments</p></body></html>")

    assert document.mime == "text/html"
    assert document.text == "After comments"


def test_deeply_nested_html_is_refused_quickly():
    page = "<html><body>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000 + "</body></html>"

    with pytest.raises(CorruptDocument, match="nested"):
        parse_document(page.encode())


def test_page_of_scripts_only_is_empty():
    with pytest.raises(EmptyDocument):
        parse_document(b"<html><body><script>alert(1)</script></body></html>")
