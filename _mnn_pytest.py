"""What mnn's ``pytest11`` entry point ``mnn`` loads into every pytest run: a gate that
registers mnn's pytest plugin (``mnn.testing.plugin``) only when asked with ``-p mnn``.

pytest loads the ``pytest11`` entry points of every installed package, so without the
gate every project that has mnn installed would get mnn's ``--target`` option and its
fixtures. The gate is a top-level module of its own (as hypothesis's pytest plugin is)
rather than part of the plugin because:

* importing anything under ``mnn`` runs ``import mnn``, NumPy included: with the gate
  here, a pytest run that does not ask for mnn imports neither;
* pytest refuses one object registered under two names: had the entry point named the
  plugin module, a conftest's ``pytest_plugins = ["mnn.testing.plugin"]`` would fail
  next to the autoloaded entry point;
* a module imported before pytest registers it as a plugin cannot have its asserts
  rewritten (pytest warns), so the plugin must not be imported until it is wanted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

#: The name of the ``pytest11`` entry point: ``-p mnn`` enables the plugin.
ENTRY_POINT_NAME = "mnn"
PLUGIN = "mnn.testing.plugin"


class Gate:
    """Registers ``mnn.testing.plugin`` when the run was started with ``-p mnn``; else nothing."""

    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> None:
        asked = [name.strip() for name in early_config.known_args_namespace.plugins]
        if ENTRY_POINT_NAME in asked:
            # Before the conftests load and the command line is parsed for good, so that
            # --target is known and a conftest's pytest_plugins finds the plugin registered.
            early_config.pluginmanager.import_plugin(PLUGIN)


#: The object the entry point names.
gate = Gate()
