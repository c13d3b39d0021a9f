"""The ``bregzoo`` command line: thin typer commands over the core, rendered with rich."""
