"""The answering pipeline: safety filters (sensitive terms, prompt injection), the prompt with numbered
sources, citations and the fact-check of every answer sentence against the sources it cites."""
