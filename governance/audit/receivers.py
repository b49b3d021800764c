"""Signal receivers that audit ingestion, accounts, permissions and logins."""


def connect() -> None:
    pass
