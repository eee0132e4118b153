"""ebmbench's built-in plugins, installed under the import name ``ebmbench_plugins``.

Each sub-package registers its classes through the ``ebmbench`` entry-point group, exactly
as a third-party plugin package would, and imports only ebmbench's public API.
"""
