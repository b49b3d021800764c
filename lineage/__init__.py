"""The lineage app: the versioned lineage graph, OpenLineage ingestion and graph queries."""
