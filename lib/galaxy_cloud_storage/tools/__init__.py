"""The plugin's Galaxy tools: the jobs that move bytes. Every Galaxy process that runs jobs loads
them from its tool_config_file (``galaxy-cloud-storage-tool-conf`` writes the entry)."""

import os

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
TOOL_FILES = ("cloud_storage_get.xml", "cloud_storage_send.xml")


def tool_conf_xml() -> str:
    """A tool_conf file that loads the plugin's tools from where the package is installed."""
    tools = "\n".join(f'    <tool file="{name}" />' for name in TOOL_FILES)
    return (
        '<?xml version="1.0"?>\n'
        "<!-- galaxy-cloud-storage's tools: add this file to tool_config_file in galaxy.yml. -->\n"
        f'<toolbox tool_path="{TOOLS_DIR}">\n  <section id="cloud_storage" name="Cloud storage">\n'
        f"{tools}\n  </section>\n</toolbox>\n"
    )
