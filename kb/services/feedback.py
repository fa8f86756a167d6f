"""Feedback on answers: one rating per question, changed as often as its asker likes."""

from kb.models import Feedback, Question

MAX_COMMENT_CHARACTERS = 4000


class InvalidFeedback(ValueError):
    pass


def give_feedback(*, question: Question, rating: str, comment: str = "") -> Feedback:
    """Store the asker's rating ("up" or "down") of the answer to `question`, replacing an earlier one."""
    if rating not in Feedback.Rating.values:
        raise InvalidFeedback(f"rating must be one of {', '.join(Feedback.Rating.values)}")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARACTERS:
        raise InvalidFeedback(f"the comment is longer than {MAX_COMMENT_CHARACTERS} characters")
    feedback, _ = Feedback.objects.update_or_create(
        question=question, defaults={"rating": rating, "comment": comment}
    )
    return feedback
