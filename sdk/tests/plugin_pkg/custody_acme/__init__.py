"""Acme's in-house table type, which the plugin teaches Custody to describe."""

from __future__ import annotations

from typing import Dict


class AcmeTable:
    def __init__(self, columns: Dict[str, str], rows: int) -> None:
        self.columns = columns
        self.rows = rows
