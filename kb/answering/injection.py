"""Prompt-injection attempts in questions and in retrieved passages, in English and Chinese.

find_injections() looks for the phrasings that try to take over a language model: orders to ignore
the instructions it was given, new identities ("you are now …", "pretend to be …"), requests for
its system prompt, injected instruction blocks, role markers and chat-template control tokens,
orders not to cite. Text is compared folded (NFKC, case-folded, invisible characters dropped, see
kb.answering.sensitive_terms.fold), so full-width letters or zero-width spaces do not hide an
attempt, and every finding is a span of the original text.

The patterns name what the instruction is about (the instructions, the prompt, the model's role), so
ordinary business text that uses the same verbs ("employees must ignore unsolicited emails", "the
deputy acts as chair", 系统提示密码错误: the system shows "wrong password") is not reported.

neutralise() defuses the control tokens in a passage before it is quoted in a prompt, so a document
cannot end the sources block or open a turn of its own.
"""

import re
from dataclasses import dataclass

from kb.answering.sensitive_terms import fold

_S = r"\s"  # one whitespace character: folding collapses every run into one
_SENTENCE = r"[^。！？!?.\n]"  # a character within the same sentence (Chinese patterns)
_REVEAL = (
    rf"(?:reveal|print|show|display|output|repeat|recite|tell{_S}me|give{_S}me|leak|dump|write{_S}out"
    rf"|share|expose|what{_S}(?:is|are|was|were))"
)
_WHOLE = r"(?:full|entire|complete|exact|verbatim)"

_ENGLISH = {
    "ignore_instructions": (
        r"\b(?:ignore|disregard|forget|override|overrule|bypass|skip)"
        rf"{_S}(?:(?:all|any|every|of|the|my|your|these|those|everything){_S}){{0,3}}"
        rf"(?:previous|prior|preceding|above|earlier|former|foregoing|original|initial|system|old)"
        rf"{_S}(?:instructions?|prompts?|directions|directives?|commands|context|rules|guardrails|constraints)\b"
        rf"|\b(?:ignore|disregard|forget){_S}(?:everything|all){_S}"
        rf"(?:above|before|you{_S}(?:were|have{_S}been){_S}(?:told|given))\b"
    ),
    "new_identity": (
        rf"\byou{_S}are{_S}now{_S}(?:no{_S}longer\b|called\b|named\b|dan\b|jailbroken\b|unrestricted\b"
        rf"|unfiltered\b|uncensored\b|free{_S}(?:from|of)\b|in{_S}\w+{_S}mode\b"
        rf"|(?:a|an|the|my){_S}(?:\w+{_S}){{0,3}}?(?:ai|assistant|chatbot|bot|language{_S}model|llm"
        rf"|character|persona)\b)"
        rf"|\bfrom{_S}now{_S}on,?{_S}you{_S}(?:are|will|must|shall|should){_S}(?:only{_S}|always{_S})?"
        rf"(?:act|respond|answer|reply|pretend|ignore|behave|obey)\b"
    ),
    "role_play": (
        rf"\bpretend{_S}(?:to{_S}be|(?:that{_S})?you{_S}(?:are|were|have|can))\b"
        rf"|\b(?:act|behave|respond|answer|reply|role-?play){_S}as{_S}(?:if|though){_S}you\b"
        rf"|\b(?:act|behave|respond|answer|reply|role-?play){_S}as{_S}(?:my{_S}|(?:an?{_S})?(?:\w+{_S}){{0,2}}?"
        rf"(?:ai|assistant|chatbot|bot|language{_S}model|llm|dan|unrestricted|unfiltered|jailbroken)\b)"
    ),
    "system_prompt_request": (
        rf"\b{_REVEAL}{_S}(?:me{_S})?(?:(?:your|the|all|of|this){_S}){{0,3}}(?:{_WHOLE}{_S})?"
        rf"(?:system{_S}(?:prompt|message|instructions?)|(?:initial|original|hidden|secret|internal)"
        rf"{_S}(?:prompt|instructions))\b"
        # "the instructions" alone are ordinary ("print the instructions"); "your instructions" are not.
        rf"|\b{_REVEAL}{_S}(?:me{_S})?(?:all{_S}(?:of{_S})?)?your{_S}(?:{_WHOLE}{_S})?(?:prompt|instructions)\b"
    ),
    "injected_instructions": (
        rf"\b(?:new|real|actual|true|secret|hidden){_S}(?:system{_S})?instructions?{_S}?:"
    ),
    "role_marker": rf"^{_S}?(?:#{{1,6}}{_S}?(?:system|assistant|user|instructions?|response)|system){_S}?:",
    "chat_template_token": r"<\|[a-z_]{2,30}\|>|\[/?inst\]|<</?sys>>|<(?:start|end)_of_turn>",
    "citation_suppression": (
        rf"\b(?:do{_S}not|don['’]?t|never|stop){_S}(?:cite|citing|quote|quoting|mention|mentioning|reference"
        rf"|referencing){_S}(?:(?:the|any|your|these|those|its|their){_S})?"
        rf"(?:sources?|citations?|references?|documents?|passages?)\b"
        rf"|\b(?:do{_S}not|don['’]?t|never){_S}(?:include|add|give|provide|show|use){_S}(?:any{_S})?"
        rf"(?:citations?|sources?|references?)\b"
    ),
}

_CHINESE = {
    # "指示" and "指令" are orders to the model; bare "提示" (a prompt on screen) and "要求"
    # (requirements) are ordinary in business text and are not matched.
    "ignore_instructions": (
        rf"(?:忽略|无视|忽视|不要理会|别理会|不用理会|忘记|忘掉|抛开|丢弃){_SENTENCE}{{0,8}}?"
        rf"(?:之前|以前|先前|此前|上面|上述|以上|前面|前述|刚才|原来|原有|原先|原始|所有|全部|一切)"
        rf"{_SENTENCE}{{0,6}}?(?:指令|指示|提示词|设定|命令|约束)"
    ),
    "new_identity": (
        rf"你现在(?:就)?是(?!否)|从现在(?:开始|起){_SENTENCE}{{0,3}}?你(?:将|就)?(?:是|扮演|充当|假装|不再)"
        r"|你不再是"
    ),
    "role_play": r"(?:假装|假扮)(?:你是|自己是|成|为)|(?:请你?|你要|你现在|现在你|你来)(?:扮演|充当|假装)",
    "system_prompt_request": (
        rf"系统提示词|(?:显示|输出|打印|告诉我|泄露|透露|重复|给出|展示|说出|公开|复述|列出){_SENTENCE}{{0,6}}?"
        r"(?:系统指令|系统消息|初始指令|原始指令|隐藏指令|你的指令|提示词)"
    ),
    "injected_instructions": r"新的?(?:指令|指示)\s?:",
    "citation_suppression": (
        r"(?:不要|不得|禁止|无需|不用|别)(?:引用|标注|注明|给出|列出|提及|提供)(?:任何)?"
        r"(?:来源|出处|引用|参考资料|资料来源)"
    ),
}

_PATTERNS = [
    (name, re.compile(pattern, re.MULTILINE))
    for patterns in (_ENGLISH, _CHINESE)
    for name, pattern in patterns.items()
]

# What a prompt template treats as structure: chat-template delimiters, and runs of angle brackets
# like the <<< >>> that fence each quoted source (kb.answering.prompt).
_CONTROL = re.compile(r"<\||\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<{3,}|>{3,}", re.IGNORECASE)
_ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True, slots=True)
class Finding:
    """A likely injection attempt: the `pattern` it matched, at original_text[start:end] == `text`."""

    pattern: str
    start: int
    end: int
    text: str


def find_injections(text: str) -> list[Finding]:
    """Every injection attempt in `text`, in order of position (an empty list for ordinary text)."""
    folded = fold(text, line_breaks=True)
    findings = []
    for name, pattern in _PATTERNS:
        for found in pattern.finditer(folded.text):
            if found.end() > found.start():
                start, end = folded.original_span(found.start(), found.end())
                findings.append(Finding(name, start, end, text[start:end]))
    return sorted(findings, key=lambda finding: (finding.start, finding.end))


def neutralise(text: str) -> str:
    """`text` with every chat-template control token and fence broken by zero-width spaces, so a
    tokenizer no longer reads them as structure while a reader sees the same text. Idempotent."""
    return _CONTROL.sub(lambda found: _ZERO_WIDTH_SPACE.join(found.group()), text)
