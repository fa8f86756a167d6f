from django import template

register = template.Library()


@register.filter
def seconds(milliseconds: int | None) -> str:
    """1234 -> "1.2 s", for latencies shown to people."""
    return "" if milliseconds is None else f"{milliseconds / 1000:.1f} s"
