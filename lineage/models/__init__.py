"""The lineage graph: entities (namespaces, datasets, jobs), their versions and runs, and edges."""

from lineage.models.code import CodeCommit
from lineage.models.dataset import Dataset, DatasetSymlink, DatasetVersion, SchemaChange
from lineage.models.edges import ColumnLineage, JobDatasetEdge, RunInput, RunOutput
from lineage.models.event import RawEvent
from lineage.models.job import Job, Run
from lineage.models.namespace import Namespace

__all__ = [
    "CodeCommit",
    "ColumnLineage",
    "Dataset",
    "DatasetSymlink",
    "DatasetVersion",
    "Job",
    "JobDatasetEdge",
    "Namespace",
    "RawEvent",
    "Run",
    "RunInput",
    "RunOutput",
    "SchemaChange",
]
