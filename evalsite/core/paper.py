"""The paper's own wording, kept once: what the annotators were asked (Appendix C) and their
three choices. The annotator page shows it; the LIMA judge template gives it to the judge."""

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
