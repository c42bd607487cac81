"""Crowd platforms, one object each: which query parameters carry a participant's id, the
platform's study and the session, what a well-formed id looks like, what the platform sends while
a worker only previews the task, where a participant goes back with their code, and which
submission statuses mean they left. Adding a platform is adding one CrowdPlatform to PLATFORMS.

Where each value comes from:
- Prolific: the study URL's placeholders {{%PROLIFIC_PID%}}, {{%STUDY_ID%}}, {{%SESSION_ID%}}
  (Prolific's help, "Recording Prolific IDs"); ids of 24 hexadecimal characters; the completion
  URL https://app.prolific.com/submissions/complete?cc=CODE; submission statuses from its API
  reference ("Submission object"): RETURNED and TIMED-OUT left without pay.
- Amazon Mechanical Turk: an external question's URL gets workerId, hitId and assignmentId;
  assignmentId is ASSIGNMENT_ID_NOT_AVAILABLE while a worker previews the HIT (MTurk's
  ExternalQuestion documentation); worker ids are upper-case letters and digits starting with A;
  the code is shown for the worker to paste (no return URL)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CrowdPlatform:
    key: str
    label: str
    id_param: str
    study_param: str
    session_param: str
    id_pattern: re.Pattern
    preview_session: str = ""  # the session parameter's value while a worker only previews
    completion_url: str = ""  # where a participant goes back, {code} replaced; "" to show the code
    placeholders: bool = False  # the study URL carries the platform's {{%NAME%}} placeholders
    left_statuses: frozenset[str] = frozenset()  # submission statuses of participants who left

    @property
    def parameters(self) -> tuple[str, str, str]:
        return self.id_param, self.study_param, self.session_param

    def study_url(self, url: str) -> str:
        """The URL to paste into the platform."""
        if not self.placeholders:
            return url
        return url + "?" + "&".join(f"{name}={{{{%{name}%}}}}" for name in self.parameters)

    def is_preview(self, params: dict[str, str]) -> bool:
        return bool(self.preview_session) and params.get(self.session_param) == self.preview_session


PROLIFIC = CrowdPlatform(
    "prolific",
    "Prolific",
    "PROLIFIC_PID",
    "STUDY_ID",
    "SESSION_ID",
    re.compile(r"[0-9a-f]{24}"),
    completion_url="https://app.prolific.com/submissions/complete?cc={code}",
    placeholders=True,
    left_statuses=frozenset({"RETURNED", "TIMED-OUT", "TIMED_OUT"}),
)
MTURK = CrowdPlatform(
    "mturk",
    "Amazon Mechanical Turk",
    "workerId",
    "hitId",
    "assignmentId",
    re.compile(r"A[0-9A-Z]{7,30}"),
    preview_session="ASSIGNMENT_ID_NOT_AVAILABLE",
)
PLATFORMS: dict[str, CrowdPlatform] = {p.key: p for p in (PROLIFIC, MTURK)}
CHOICES = [(p.key, p.label) for p in PLATFORMS.values()]


def platform(key: str) -> CrowdPlatform:
    try:
        return PLATFORMS[key]
    except KeyError:
        raise ValueError(f"no crowd platform {key!r} ({', '.join(PLATFORMS)})") from None
