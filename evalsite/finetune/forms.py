from django import forms


class ReviewForm(forms.Form):
    action = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject"), ("edit", "Save edit")])
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    answer = forms.CharField(widget=forms.Textarea(attrs={"rows": 16}), required=False)
    note = forms.CharField(max_length=300, required=False)
