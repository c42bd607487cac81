from django import forms

from evalsite.crowd.platforms import CHOICES, PROLIFIC


class CrowdLinkForm(forms.Form):
    """The study page's crowd card; the rules that need the study are checked by create_link."""

    platform = forms.ChoiceField(choices=CHOICES, required=False)
    quota = forms.IntegerField(min_value=1, required=False)
    screening_items = forms.IntegerField(min_value=0, required=False)
    screening_pass = forms.IntegerField(min_value=0, required=False)
    completion_url = forms.CharField(max_length=300, required=False, strip=True)
    completion_code = forms.CharField(max_length=40, required=False, strip=True)
    only_verified = forms.BooleanField(required=False)

    DEFAULTS = {"platform": PROLIFIC.key, "quota": 20, "screening_items": 0, "screening_pass": 0}

    def clean(self):
        data = super().clean()
        for field, default in self.DEFAULTS.items():
            if data.get(field) in (None, ""):
                data[field] = default
        return data
