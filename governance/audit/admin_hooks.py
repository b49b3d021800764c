"""Admin edits of every model."""


def install() -> None:
    pass
