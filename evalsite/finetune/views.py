from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evalsite.core.charts import line_chart
from evalsite.core.decorators import staff_required
from evalsite.core.models import Workflow
from evalsite.finetune import ablation as ablations
from evalsite.finetune import services
from evalsite.finetune.forms import ReviewForm
from evalsite.finetune.models import Ablation, Checkpoint, TrainingDataset, TrainingExample, TrainingRun
from evalsite.finetune.workflows import ABLATION

PAGE = 50


@staff_required
def index(request):
    runs = TrainingRun.objects.select_related("dataset", "base")[:100]
    datasets = TrainingDataset.objects.annotate(
        kept=Count("examples", filter=~Q(examples__status=TrainingExample.Status.REJECTED)),
        reviewed=Count("examples", filter=~Q(examples__status=TrainingExample.Status.CANDIDATE)),
    )
    context = {"runs": runs, "datasets": datasets, "ablations": Ablation.objects.select_related("dataset")[:50]}
    return render(request, "finetune/index.html", context)


@staff_required
def run_detail(request, pk: int):
    run = get_object_or_404(TrainingRun.objects.select_related("dataset", "base"), pk=pk)
    history = run.loss_history
    epoch_ends = [h[0] for h, nxt in zip(history, history[1:], strict=False) if nxt[1] != h[1]]
    # the held-out loss of epoch N sits at the step that ended it (the base's at step 0)
    end_of = {h[1]: h[0] for h in history}
    heldout = [
        (0 if epoch == 0 else end_of[epoch], loss)
        for epoch, loss, _ in run.heldout_history
        if epoch == 0 or epoch in end_of
    ]
    chart = line_chart(
        [(h[0], h[2]) for h in history],
        "Loss: train per step, held out per epoch",
        "optimiser step",
        "loss",
        epoch_ends,
        second=("held out, dropout off", heldout) if heldout else None,
        first_label="train, dropout on",
    )
    heldout_by_epoch = {epoch: loss for epoch, loss, _ in run.heldout_history}
    heldout_examples = run.heldout_history[0][2] if run.heldout_history else 0
    recipe = sorted(run.recipe.items())
    checkpoints = list(run.checkpoints.select_related("system"))
    # the paper picked between epochs 5 and 10; a shorter run offers what it has
    last = run.recipe.get("epochs", 1)
    selection = f"{min(5, last)}-{min(10, last)}" if last >= 5 else f"1-{last}"
    for checkpoint in checkpoints:
        checkpoint.heldout_loss = heldout_by_epoch.get(checkpoint.epoch)
    context = {
        "run": run,
        "chart": chart,
        "recipe": recipe,
        "checkpoints": checkpoints,
        "selection": selection,
        "base_heldout": heldout_by_epoch.get(0),
        "heldout_examples": heldout_examples,
        "trained_on": run.examples_used - heldout_examples,  # examples_used counts the held-out ones too
    }
    return render(request, "finetune/run_detail.html", {**context, "percent": 100 * run.fraction_done})


@staff_required
@require_POST
def run_cancel(request, pk: int):
    get_object_or_404(TrainingRun, pk=pk).request_cancel()
    return redirect("finetune:run_detail", pk=pk)


@staff_required
@require_POST
def run_register(request, pk: int):
    epoch = request.POST.get("epoch", "")
    checkpoint = get_object_or_404(Checkpoint, run_id=pk, epoch=int(epoch) if epoch.isdigit() else -1)
    system = services.register_checkpoint(checkpoint.run, checkpoint.epoch)
    messages.success(request, f"epoch {checkpoint.epoch} is now the candidate system {system.name}")
    return redirect("finetune:run_detail", pk=pk)


@staff_required
def dataset_detail(request, name: str):
    dataset = get_object_or_404(TrainingDataset, name=name)
    status = request.GET.get("status", "")
    source = request.GET.get("source", "")
    examples = dataset.examples.all()
    if status in TrainingExample.Status.values:
        examples = examples.filter(status=status)
    if source:
        examples = examples.filter(source=source)
    page = Paginator(examples, PAGE).get_page(request.GET.get("page"))
    counts = dict(dataset.examples.values_list("status").annotate(n=Count("id")))
    return render(
        request,
        "finetune/dataset_detail.html",
        {
            "dataset": dataset,
            "table": services.table_1(dataset),
            "examples": page.object_list,
            "page": page,
            "status": status,
            "source": source,
            "sources": sorted(set(dataset.examples.values_list("source", flat=True))),
            "statuses": [(value, counts.get(value, 0)) for value in TrainingExample.Status.values],
        },
    )


@staff_required
def example_review(request, pk: int):
    example = get_object_or_404(TrainingExample.objects.select_related("dataset", "reviewed_by"), pk=pk)
    if request.method == "POST":
        form = ReviewForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.review(example, request.user, data["action"], data["prompt"], data["answer"], data["note"])
            except services.TrainingError as exc:
                form.add_error(None, str(exc))
            else:
                following = (
                    example.dataset.examples.filter(pk__gt=example.pk, status=TrainingExample.Status.CANDIDATE)
                    .order_by("pk")
                    .first()
                )
                messages.success(request, f"{example.external_id}: {data['action']} saved")
                if following:
                    return redirect("finetune:example_review", pk=following.pk)
                return redirect("finetune:dataset_detail", name=example.dataset.name)
    else:
        form = ReviewForm(initial={"prompt": example.prompt, "answer": example.messages[-1]["content"]})
    return render(request, "finetune/example_review.html", {"example": example, "form": form})


@staff_required
def ablation_detail(request, name: str):
    ablation = get_object_or_404(Ablation.objects.select_related("dataset", "base", "prompt_set", "judge"), name=name)
    rows = ablations.curve(ablation)
    chart = ablations.curve_figure(ablation, rows)
    workflow = Workflow.objects.filter(kind=ABLATION.name, subject_id=ablation.pk).first()
    context = {"ablation": ablation, "rows": rows, "chart": chart.svg, "workflow": workflow}
    return render(request, "finetune/ablation_detail.html", context)
