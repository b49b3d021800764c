"""Version and the URIs that identify this SDK as the producer of OpenLineage events."""

__version__ = "0.1.0"

#: Where the project lives. Every producer and facet-schema URL below derives from it.
PROJECT_URL = "https://github.com/custody/custody"
#: ``producer`` of every event and ``_producer`` of every facet this SDK writes.
PRODUCER = f"{PROJECT_URL}/tree/sdk-v{__version__}/sdk"
#: Base of the ``_schemaURL`` of the SDK's own ``custody_*`` facets (files in ``custody/schemas/``).
SCHEMA_BASE = f"{PROJECT_URL}/blob/main/sdk/custody/schemas"
