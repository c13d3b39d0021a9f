"""The built-in zoo. Registered through the ``bregzoo`` entry-point group, like any third-party plugin."""
