"""The training side's workflows (evalsite/core/workflows.py): an ablation, cell by cell, and a
checkpoint selection (each checkpoint's answers, then the study that compares them, then a judge
job on it if one was asked for). Registered in FinetuneConfig.ready."""

from __future__ import annotations

from evalsite.annotation import studies
from evalsite.annotation.models import Study
from evalsite.answering.models import GenerationJob
from evalsite.answering.services import start_generation
from evalsite.core.jobs import JobStatus
from evalsite.core.models import Workflow
from evalsite.core.workflows import Step, register
from evalsite.finetune import ablation as plan
from evalsite.finetune.models import Ablation
from evalsite.judging.models import JudgeConfig, JudgeJob
from evalsite.judging.services import start_judge_job

STAGES = ("training", "generating", "rating")


class AblationWorkflow:
    """Each cell: its subset trained, the last checkpoint answering, the judge rating the answers
    (finetune/ablation.py ``advance``, one start-or-join per step)."""

    name = "ablation"
    swept = True

    def title(self, subject_id: int) -> str:
        return f"ablation {Ablation.objects.get(pk=subject_id).name}"

    def link(self, subject_id: int) -> str:
        return f"/training/ablations/{Ablation.objects.get(pk=subject_id).name}/"

    def advance(self, workflow: Workflow, enqueue: bool, retry: bool) -> list[Step]:
        ablation = Ablation.objects.get(pk=workflow.subject_id)
        steps = []
        for state in plan.advance(ablation, enqueue=enqueue, retry=retry):
            label = state.cell.label
            reached = STAGES.index(state.stage) if state.stage in STAGES else len(STAGES)
            jobs = {"training": state.cell.run, "generating": state.cell.generation, "rating": state.cell.rating}
            for n, stage in enumerate(STAGES):
                name = f"cell {label}: {stage}"
                if state.stage == "failed" and (state.job is None or state.job == jobs[stage]):
                    steps.append(Step(name, "failed", detail=state.detail))
                    break
                if n <= reached:  # a stage before the cell's is done, and so is its job
                    steps.append(Step.of_job(name, jobs[stage] if n < reached else state.job))
                else:
                    steps.append(Step(name, "waiting"))
        return steps


class CheckpointSelection:
    """The paper's checkpoint pick: each checkpoint of the range answers the dev set; when all
    have, the study comparing them opens (and a judge job runs on it, if asked). Its subject is
    the study; ``params``: the generation jobs' ids and the judge config's."""

    name = "checkpoint-selection"
    swept = True

    def title(self, subject_id: int) -> str:
        return f"checkpoint selection {Study.objects.get(pk=subject_id).name}"

    def link(self, subject_id: int) -> str:
        return f"/dashboard/{Study.objects.get(pk=subject_id).name}/"

    def advance(self, workflow: Workflow, enqueue: bool, retry: bool) -> list[Step]:
        study = Study.objects.get(pk=workflow.subject_id)
        steps, answered = [], True
        generations = GenerationJob.objects.in_bulk(workflow.params["generations"])
        for pk in workflow.params["generations"]:
            job = generations[pk]
            if retry and job.status in plan.FAILED:
                job, _ = start_generation(job.system, job.prompt_set, job.samples_per_prompt, enqueue=enqueue)
                workflow.params["generations"] = [job.pk if p == pk else p for p in workflow.params["generations"]]
            steps.append(Step.of_job(f"answers of {job.system.name}", job))
            answered &= job.status == JobStatus.DONE
        if not answered:
            return [*steps, Step("study opens", "waiting"), *self._judge_step(workflow, None)]
        if study.status == Study.Status.DRAFT:
            studies.start_study(study)
        steps.append(Step("study opens", "done", detail=f"study {study.name}"))
        judge = None
        if workflow.params.get("judge"):
            judge = JudgeJob.objects.filter(pk=workflow.params.get("judge_job")).first()
            if judge is None or (retry and judge.status in plan.FAILED):
                config = JudgeConfig.objects.get(pk=workflow.params["judge"])
                judge, _ = start_judge_job(study, config, enqueue=enqueue)
                workflow.params["judge_job"] = judge.pk
        return [*steps, *self._judge_step(workflow, judge)]

    def _judge_step(self, workflow: Workflow, judge: JudgeJob | None) -> list[Step]:
        return [Step.of_job("judge job", judge)] if workflow.params.get("judge") else []


ABLATION = register(AblationWorkflow())
CHECKPOINT_SELECTION = register(CheckpointSelection())
