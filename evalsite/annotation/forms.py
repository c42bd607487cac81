"""Every input of the annotation pages, validated here (the views read, call a service, render).
The templates write their own inputs; these forms name the fields they post."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import User

from evalsite.annotation.models import Assignment, Study
from evalsite.catalog.models import PromptSet, System
from evalsite.core.paper import LIMA_CHOICES


def first_error(form: forms.Form, named: bool = True) -> str:
    """One line for a message: the first field's first error (named, for staff forms)."""
    for field, errors in form.errors.items():
        return f"{field}: {errors[0]}" if named and field != "__all__" else errors[0]
    return ""


class JudgeForm(forms.Form):
    choice = forms.ChoiceField(
        choices=list(LIMA_CHOICES.items()),
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
    candidate = forms.ModelChoiceField(System.objects.all())
    baselines = forms.ModelMultipleChoiceField(System.objects.all())
    prompt_set = forms.ModelChoiceField(PromptSet.objects.all())
    overlap = forms.IntegerField(min_value=1, max_value=20, initial=1)
    gold_rate = forms.FloatField(min_value=0.0, max_value=0.5, initial=0.05, required=False)
    assignment = forms.ChoiceField(choices=Study.AssignmentPolicy.choices, required=False)


class ExcludeForm(forms.Form):
    user_id = forms.ModelChoiceField(User.objects.all())
    exclude = forms.BooleanField(required=False)


class InviteForm(forms.Form):
    email = forms.EmailField(error_messages={"required": "give an e-mail address", "invalid": "give an e-mail address"})
