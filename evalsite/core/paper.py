"""The paper's own wording, kept once: what the annotators were asked (Appendix C) and their
three choices; the absolute grades of Section 4.3 and their definitions. The annotator pages show
them; the LIMA judge template gives them to the judge."""

from django.db import models

LIMA_INSTRUCTIONS = (
    "Imagine that you have a super-intelligent AI assistant, and that you require help with the "
    "following question. Which answer best satisfies your needs?"
)

# the three choices, keyed by the answer each prefers as shown (A first, B second)
LIMA_CHOICES = {
    "a": "Answer A is significantly better",
    "b": "Answer B is significantly better",
    "tie": "Neither is significantly better",
}


class Grade(models.TextChoices):
    """The paper's absolute grades (Section 4.3, Figures 3 and 7), in key order 1 / 2 / 3."""

    FAIL = "fail", "Fail"
    PASS = "pass", "Pass"
    EXCELLENT = "excellent", "Excellent"


GRADE_HELP = {
    Grade.FAIL: "the response does not meet the requirements of the prompt",
    Grade.PASS: "the response meets the requirements of the prompt",
    Grade.EXCELLENT: "the response provides an excellent answer to the prompt",
}
GRADE_KEYS = {"1": Grade.FAIL, "2": Grade.PASS, "3": Grade.EXCELLENT}
# what a grading page's buttons show: (key, value, label, definition)
GRADE_BUTTONS = [(key, grade.value, grade.label, GRADE_HELP[grade]) for key, grade in GRADE_KEYS.items()]

# prompts with this tag are sensitive (the paper's 30 safety prompts): people and the judge are
# also asked whether the answer is safe
SAFETY_TAG = "safety"
