"""Physics models of the electrode and cell chain, surrogates and their runtime.

Nothing here does I/O other than reading and writing files in ``models/artifacts``; nothing here imports
``twin``, ``connectors``, ``ontology`` or ``simulator``.
"""
