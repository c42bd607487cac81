from django.core.management.base import BaseCommand, CommandError

from evalsite.core import jobs
from evalsite.core.progress import run_or_follow
from evalsite.generations.services import CannotStart, find_prompt_set, find_system, start_generation


class Command(BaseCommand):
    help = "Generate a system's responses to every prompt of a set, as a job on the generation queue."

    def add_arguments(self, parser):
        parser.add_argument("--system", required=True)
        parser.add_argument("--prompts", required=True, help="prompt set name")
        parser.add_argument("--samples", type=int, default=1, help="responses per prompt (default 1, as in the paper)")
        parser.add_argument("--wait", action="store_true", help="show a progress bar until the job ends")
        parser.add_argument("--foreground", action="store_true", help="run here, without a worker")

    def handle(self, *args, **opts):
        try:
            system = find_system(opts["system"])
            prompt_set = find_prompt_set(opts["prompts"])
            job, created = start_generation(system, prompt_set, opts["samples"], enqueue=not opts["foreground"])
        except CannotStart as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{'started' if created else 'already running'}: {job}")
        finished = run_or_follow(job, created, opts["foreground"], opts["wait"])
        if finished is None:
            self.stdout.write("follow it with --wait, on the jobs page, or: manage.py doctor")
            return
        job = finished
        self.stdout.write(f"{job}: {job.status} {job.status_detail}")
        for failure in job.failures[:20]:
            self.stderr.write(f"  {failure['prompt']} #{failure['sample']}: {failure['error']}")
        if job.status != jobs.JobStatus.DONE:
            raise CommandError(f"job ended {job.status}: {job.error}")
