from django.core.management.base import BaseCommand, CommandError

from evalsite.core.progress import run_or_follow
from evalsite.generations.services import CannotStart, find_prompt_set, find_system
from evalsite.judging import services
from evalsite.judging.results import rating_summary


class Command(BaseCommand):
    help = "Absolute ratings of a system's responses by the judge: Fail/Pass/Excellent or the 1-6 Likert score."

    def add_arguments(self, parser):
        parser.add_argument("--system", required=True)
        parser.add_argument("--prompts", required=True)
        parser.add_argument("--kind", choices=["fpe", "likert"], default="fpe")
        parser.add_argument("--samples", type=int, default=1, help="ratings per response (the paper: 5 for Likert)")
        parser.add_argument("--config", default=services.LOCAL_JUDGE)
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--foreground", action="store_true")

    def handle(self, *args, **opts):
        try:
            system, prompt_set = find_system(opts["system"]), find_prompt_set(opts["prompts"])
            config = services.find_config(opts["config"])
            job = services.start_rating_job(
                config, system, prompt_set, opts["kind"], opts["samples"], enqueue=not opts["foreground"]
            )
        except (CannotStart, services.CannotJudge) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"started: {job}")
        job = run_or_follow(job, True, opts["foreground"], opts["wait"])
        if job is None:
            return
        s = rating_summary(job)
        self.stdout.write(f"{job}: {job.status}; {s}")
