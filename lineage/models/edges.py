from __future__ import annotations

from django.db import models

from lineage.models.dataset import Dataset, DatasetVersion
from lineage.models.fields import DocumentField
from lineage.models.job import Job, Run


class RunInput(models.Model):
    """Version level: a run consumed a dataset (and, when the producer said which, that version)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="inputs")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="consumed_by")
    version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="consumed_by"
    )
    first_seen_at = models.DateTimeField()
    facets = DocumentField(default=dict, help_text="inputFacets, newest value of each.")
    facet_times = DocumentField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "dataset"], name="uniq_run_input")]
        indexes = [models.Index(fields=["dataset", "first_seen_at"], name="runinput_dataset_idx")]

    def __str__(self) -> str:
        return f"run {self.run_id} read dataset {self.dataset_id}"


class RunOutput(models.Model):
    """Version level: a run wrote a dataset version."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="outputs")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="produced_by")
    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="written_by")
    first_seen_at = models.DateTimeField()
    facets = DocumentField(default=dict, help_text="outputFacets, newest value of each.")
    facet_times = DocumentField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "dataset"], name="uniq_run_output")]
        indexes = [models.Index(fields=["dataset", "first_seen_at"], name="runoutput_dataset_idx")]

    def __str__(self) -> str:
        return f"run {self.run_id} wrote dataset {self.dataset_id}"


class JobDatasetEdge(models.Model):
    """Entity level: a job read (IN) or wrote (OUT) a dataset during [valid_from, valid_to).

    When a job's inputs or outputs change, the old edge is closed, never overwritten, so the graph
    can be asked what it looked like at any past instant.
    """

    class Direction(models.IntegerChoices):
        IN = 0, "input"
        OUT = 1, "output"

    class Source(models.IntegerChoices):
        RUNS = 0, "runs"
        STATIC = 1, "static declaration (JobEvent)"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="edges")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="edges")
    direction = models.SmallIntegerField(choices=Direction.choices)
    source = models.SmallIntegerField(choices=Source.choices, default=Source.RUNS)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["job", "valid_from"], name="edge_job_idx"),
            models.Index(fields=["dataset", "valid_from"], name="edge_dataset_idx"),
            models.Index(
                fields=["job", "dataset", "direction"],
                name="edge_job_current_idx",
                condition=models.Q(valid_to__isnull=True),
            ),
            models.Index(
                fields=["dataset", "job", "direction"],
                name="edge_dataset_current_idx",
                condition=models.Q(valid_to__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "dataset", "direction", "source"],
                condition=models.Q(valid_to__isnull=True),
                name="uniq_open_edge",
            )
        ]

    def __str__(self) -> str:
        arrow = "→" if self.direction == self.Direction.OUT else "←"
        return f"job {self.job_id} {arrow} dataset {self.dataset_id} [{self.valid_from}, {self.valid_to or '…'})"


class ColumnLineage(models.Model):
    """A field of an output dataset derives from a field of an input dataset (`columnLineage` facet)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="column_lineage")
    field = models.CharField(max_length=1024)
    input_dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="column_lineage_out")
    input_field = models.CharField(max_length=1024)
    transformations = DocumentField(default=list)
    transformation_description = models.TextField(blank=True, default="")
    transformation_type = models.CharField(max_length=64, blank=True, default="")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event_time = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "field", "input_dataset", "input_field"], name="uniq_column_lineage"
            )
        ]
        indexes = [models.Index(fields=["input_dataset", "input_field"], name="cll_input_idx")]

    def __str__(self) -> str:
        return f"{self.dataset_id}.{self.field} ← {self.input_dataset_id}.{self.input_field}"
