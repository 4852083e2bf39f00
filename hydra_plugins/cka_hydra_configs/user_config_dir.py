"""cka_hydra's search path: `python -m cka_hydra --config-dir DIR` puts DIR's configs before the
packaged ones, and the `cka-pairs` source (index_pairs) comes after them.

Hydra's own `--config-dir` puts DIR after the app's configs, so a regime file of the user's named
like a packaged one (`regime/pt1.yaml`) would never be read. `cka_hydra.__main__` takes the flag
and names DIR in the environment variable USER_CONFIG_DIR; this plugin puts it first, before the
app's `pkg://cka_hydra.conf`. Only cka_hydra's own search path is touched: other Hydra apps in the
environment see no change.
"""
# No `from __future__ import annotations` here: it breaks the plugin discovery of Hydra 1.3.8.
import os

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

from hydra_plugins.cka_hydra_configs.index_pairs import SCHEME

USER_CONFIG_DIR = "CKA_HYDRA_CONFIG_DIR"
APP_CONFIGS = "pkg://cka_hydra.conf"


class CKAHydraSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == APP_CONFIGS for element in search_path.get_path()):
            return
        search_path.append("cka_hydra index pairs", f"{SCHEME}://options", anchor=SearchPathQuery(path=APP_CONFIGS))
        folder = os.environ.get(USER_CONFIG_DIR)
        if folder:
            search_path.prepend("cka_hydra --config-dir", f"file://{folder}", anchor=SearchPathQuery(path=APP_CONFIGS))
