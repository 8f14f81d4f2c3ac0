"""Built-in plugins of geom (installed as ``geom_plugins``), each declared as an entry point in group
``"geom"`` in pyproject.toml, exactly as a third-party package declares its own."""
