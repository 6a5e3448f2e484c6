"""The root of every error EdgeStream's host side raises on purpose."""


class EdgeStreamError(Exception):
    """Base class: catch this to handle any EdgeStream failure a user can act on."""
