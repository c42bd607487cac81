"""Every input of the annotation pages, validated here (the views read, call a service, render).
The templates write their own inputs; these forms name the fields they post."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import User

from evalsite.annotation.answers import CHOICE_WORDS
from evalsite.annotation.models import Assignment, Study
from evalsite.annotation.studies import comparable_systems
from evalsite.catalog.models import PromptSet
from stats.evidence import VotePlan, plan_votes


def first_error(form: forms.Form, named: bool = True) -> str:
    """One line for a message: the first field's first error (named, for staff forms)."""
    for field, errors in form.errors.items():
        return f"{field}: {errors[0]}" if named and field != "__all__" else str(errors[0])
    return ""


class JudgeForm(forms.Form):
    choice = forms.ChoiceField(
        choices=list(CHOICE_WORDS.items()),  # "both_bad" only where the study offers it (answers.submit)
        error_messages={"required": "choose A, B or neither", "invalid_choice": "choose A, B or neither"},
    )
    reason = forms.CharField(max_length=2000, required=False, strip=True)


class SkipForm(forms.Form):
    flag = forms.ChoiceField(
        choices=[("", "skip"), *Assignment.Flag.choices],
        required=False,
        error_messages={"invalid_choice": "unknown flag '%(value)s'"},
    )


class StudyForm(forms.Form):
    name = forms.SlugField(max_length=100)
    kind = forms.ChoiceField(choices=Study.Kind.choices, required=False)
    candidate = forms.ModelChoiceField(comparable_systems())
    baselines = forms.ModelMultipleChoiceField(comparable_systems(), required=False)
    prompt_set = forms.ModelChoiceField(PromptSet.objects.all())
    overlap = forms.IntegerField(min_value=1, max_value=20, initial=1)
    gold_rate = forms.FloatField(min_value=0.0, max_value=0.5, initial=0.05, required=False)
    assignment = forms.ChoiceField(choices=Study.AssignmentPolicy.choices, required=False)


class PlanForm(forms.Form):
    """The vote planner's inputs (create_study --plan on the page)."""

    baselines = forms.IntegerField(min_value=1, max_value=50, initial=3)
    win = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.5, label="expected win share")
    tie = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.2, label="expected tie share")
    target = forms.FloatField(min_value=0.005, max_value=0.45, initial=0.05, label="half-width wanted")
    agreement = forms.FloatField(min_value=0.34, max_value=1.0, required=False, label="judge agreement")
    seconds_per_vote = forms.FloatField(min_value=1, initial=60)
    pay_per_hour = forms.FloatField(min_value=0, initial=12)

    def clean(self):
        data = super().clean()
        if data.get("win") is not None and data.get("tie") is not None and data["win"] + data["tie"] > 1:
            raise forms.ValidationError("the expected win and tie shares add up to more than 1")
        return data

    def plans(self) -> list[tuple[str, VotePlan]]:
        d = self.cleaned_data
        shares = (d["win"], d["tie"], 1 - d["win"] - d["tie"])
        cost = {"seconds_per_vote": d["seconds_per_vote"], "pay_per_hour": d["pay_per_hour"]}
        rows = [
            (
                "people only, one look at the end",
                plan_votes(d["baselines"], shares, d["target"], anytime=False, **cost),
            ),
            ("people only, looked at as it goes", plan_votes(d["baselines"], shares, d["target"], **cost)),
        ]
        if d.get("agreement") is not None:
            helped = plan_votes(d["baselines"], shares, d["target"], agreement=d["agreement"], **cost)
            rows.append((f"judge-assisted (agreement {d['agreement']:.0%}), as it goes", helped))
        return rows


class ExcludeForm(forms.Form):
    user_id = forms.ModelChoiceField(User.objects.all())
    exclude = forms.BooleanField(required=False)


class InviteForm(forms.Form):
    email = forms.EmailField(error_messages={"required": "give an e-mail address", "invalid": "give an e-mail address"})
