from evalsite.answering.services import start_generation
from evalsite.catalog.find import find_prompt_set, find_system
from evalsite.core.commands import JobCommand


class Command(JobCommand):
    help = "Generate a system's responses to every prompt of a set, as a job on the generation queue."

    def add_job_arguments(self, parser):
        parser.add_argument("--system", required=True)
        parser.add_argument("--prompts", required=True, help="prompt set name")
        parser.add_argument("--samples", type=int, default=1, help="responses per prompt (default 1, as in the paper)")

    def start(self, opts, enqueue):
        system, prompt_set = find_system(opts["system"]), find_prompt_set(opts["prompts"])
        return start_generation(system, prompt_set, opts["samples"], enqueue=enqueue)

    def report(self, job):
        super().report(job)
        for failure in job.failures[:20]:
            self.stderr.write(f"  {failure['prompt']} #{failure['sample']}: {failure['error']}")
