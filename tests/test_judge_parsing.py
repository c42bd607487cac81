import pytest

from evalsite.judging.prompts import parse_lima, parse_mtbench, render


@pytest.mark.parametrize(
    "output, verdict",
    [
        ("Answer A is significantly better.", "first"),
        ('"Answer B is significantly better."', "second"),
        ("Neither is significantly better", "tie"),
        ("**Answer A is significantly better**", "first"),
        ("answer b is significantly better.", "second"),
        ("After comparing both, I believe Answer B is significantly better because it is more complete.", "second"),
        ("- \u201cNeither is significantly better.\u201d", "tie"),
        ("Answer A", "first"),
        ("B", "second"),
        ("Neither.", "tie"),
        ("  A  ", "first"),
    ],
)
def test_lima_outputs_that_say_one_thing_are_read(output, verdict):
    assert parse_lima(output).verdict == verdict


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Both answers have their merits.",
        "Answer A is significantly better. On reflection, Answer B is significantly better.",
        "I cannot decide between them.",
        "Answer A is better than Answer B.",  # not one of the three options: never guessed
        "As an AI language model, I will not judge.",
    ],
)
def test_lima_outputs_that_do_not_are_parse_failures_not_ties(output):
    parsed = parse_lima(output)
    assert parsed.verdict is None and parsed.reason


@pytest.mark.parametrize(
    "output, verdict",
    [
        ("Assistant A is more detailed. [[A]]", "first"),
        ("Explanation... Final verdict: [[B]]", "second"),
        ("They are equally good. [[C]]", "tie"),
        ("[[ A ]]", "first"),
        ("Verdict: [[A]] and again [[A]]", "first"),
        ("[[A]] no wait [[B]]", None),
        ("A is better", None),
        ("[A]", None),
    ],
)
def test_mtbench_verdicts(output, verdict):
    assert parse_mtbench(output).verdict == verdict


def test_the_lima_template_carries_the_papers_instructions_and_both_answers():
    text = render("lima", [{"role": "user", "content": "Why?"}], "first answer", "second answer")
    assert text.startswith("Imagine that you have a super-intelligent AI assistant")
    assert text.index("first answer") < text.index("second answer")
    assert '"Neither is significantly better."' in text
    multi = render(
        "lima",
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Joke?"},
        ],
        "a",
        "b",
    )
    assert "User: Hi\n\nAssistant: Hello\n\nUser: Joke?" in multi


def test_every_registered_template_renders_parses_its_own_kind_of_output_and_plans_its_tokens():
    """Each judge template is one object (evalsite.judging.prompts.TEMPLATES): its text renders
    the question and the answers, its parser reads an output of its kind and refuses garbage, its
    reminder is a request, and estimates and budgets know its expected output (a template missing
    from a parallel table once raised KeyError the day a rating job got a budget)."""
    from evalsite.judging.prompts import CONFIG_CHOICES, TEMPLATES

    messages = [{"role": "user", "content": "Which is the capital of France?"}]
    for name, t in TEMPLATES.items():
        text = render(name, messages, "Paris is the capital.", "Lyon, I think." if t.pairwise else "")
        assert "Which is the capital of France?" in text and "Paris is the capital." in text, name
        assert ("Lyon, I think." in text) == t.pairwise, name
        assert t.parse(t.example).verdict is not None, f"{name} cannot read its own example"
        assert t.parse("").verdict is None and t.parse("lorem ipsum dolor").verdict is None, name
        assert t.reminder and 0 < t.expected_output_tokens <= 1000, name
        assert len(t.hash) == 16
    assert {name for name, _ in CONFIG_CHOICES} == {"lima", "mtbench"}, "what a judge config may choose"
