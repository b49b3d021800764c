from __future__ import annotations

from django.db import models


class CodeCommit(models.Model):
    """A commit of source code that a run executed (from `sourceCodeLocation` or the SDK's git facet)."""

    repo_url = models.CharField(max_length=1024)
    sha = models.CharField(max_length=255, help_text="Commit id (the facet's `version`).")
    vcs_type = models.CharField(max_length=32, blank=True, default="git")
    branch = models.CharField(max_length=512, blank=True, default="")
    tag = models.CharField(max_length=512, blank=True, default="")
    path = models.CharField(max_length=1024, blank=True, default="")
    url = models.CharField(max_length=2048, blank=True, default="")
    author = models.CharField(max_length=512, blank=True, default="")
    is_dirty = models.BooleanField(null=True, help_text="Uncommitted changes in the working tree, when known.")
    diff_digest = models.CharField(max_length=71, blank=True, default="")
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repo_url", "sha"], name="uniq_commit_repo_sha")]

    def __str__(self) -> str:
        return f"{self.repo_url}@{self.sha[:12]}"
