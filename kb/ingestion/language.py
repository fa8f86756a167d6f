"""Which language a piece of text is in, for the languages the pipeline treats differently."""

import re

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z]+")

ENGLISH = "en"
CHINESE = "zh"


def detect_language(text: str) -> str:
    """ "zh" when Han characters outweigh Latin-script words, "en" when words do, "" for neither.

    A Han character carries about as much meaning as an English word, so they are compared one
    to one; mixed text (Chinese prose with English product names) comes out as Chinese. Text in
    other Latin-script languages is treated as English: their sentences split the same way.
    """
    han = len(HAN.findall(text))
    words = len(LATIN_WORD.findall(text))
    if han == 0 and words == 0:
        return ""
    return CHINESE if han >= words else ENGLISH
