from evalsite.catalog.find import find_prompt_set, find_system
from evalsite.core.commands import JobCommand
from evalsite.judging import services
from evalsite.judging.rating_kinds import RATING_KINDS
from evalsite.judging.results import rating_job_summary


class Command(JobCommand):
    help = "Absolute ratings of a system's responses by the judge: Fail/Pass/Excellent or the 1-6 Likert score."

    def add_job_arguments(self, parser):
        parser.add_argument("--system", required=True)
        parser.add_argument("--prompts", required=True)
        parser.add_argument(
            "--kind", choices=list(RATING_KINDS), default="fpe", help="safety: prompts tagged safety only"
        )
        parser.add_argument("--samples", type=int, default=1, help="ratings per response (the paper: 5 for Likert)")
        parser.add_argument("--config", default=services.LOCAL_JUDGE)

    def start(self, opts, enqueue):
        system, prompt_set = find_system(opts["system"]), find_prompt_set(opts["prompts"])
        config = services.find_config(opts["config"])
        return services.start_rating_job(config, system, prompt_set, opts["kind"], opts["samples"], enqueue=enqueue)

    def report(self, job):
        self.stdout.write(f"{job}: {job.status}; {rating_job_summary(job)}")
