"""The plugin's Galaxy tools and the tool_conf entry that loads them."""

import os
import xml.etree.ElementTree as ET

from Cheetah.Template import Template
from galaxy.tool_util.output_checker import check_output, DETECTED_JOB_STATE
from galaxy.tool_util.parser import get_tool_source

from galaxy_cloud_storage.cli import tool_conf_main
from galaxy_cloud_storage.contracts import TRANSFER_PARAMETER
from galaxy_cloud_storage.tools import tool_conf_xml, TOOL_FILES, TOOLS_DIR
from galaxy_cloud_storage.transfer.job import END_OF_JOB


def test_tool_conf_loads_both_tools_from_the_installed_package(tmp_path):
    target = tmp_path / "cloud_storage_tool_conf.xml"
    assert tool_conf_main([str(target)]) == 0
    root = ET.parse(target).getroot()
    assert root.get("tool_path") == TOOLS_DIR
    files = [tool.get("file") for tool in root.iter("tool")]
    assert files == list(TOOL_FILES)
    for name in files:
        assert os.path.exists(os.path.join(TOOLS_DIR, name))
    assert target.read_text() == tool_conf_xml()


def test_tools_parse_and_keep_secrets_off_the_command_line():
    ids = {}
    for name in TOOL_FILES:
        source = get_tool_source(os.path.join(TOOLS_DIR, name))
        ids[source.parse_id()] = source
        command = source.parse_command()
        # only config file paths on the command line: credentials live in a file the job deletes
        assert "$credentials" in command and "$manifest" in command
        assert "authz" not in command and "bucket" not in command
    assert set(ids) == {"cloud_storage_get", "cloud_storage_send"}


def test_each_parameter_reaches_the_config_files_by_its_name():
    """Cheetah looks a placeholder up in its template object before Galaxy's parameters: a
    parameter named like one of the object's attributes (``request`` was one) renders as that
    attribute, and the job fails while its config files are built."""
    for name in TOOL_FILES:
        root = ET.parse(os.path.join(TOOLS_DIR, name)).getroot()
        params = [param.get("name") for param in root.iter("param")]
        assert params == [TRANSFER_PARAMETER], name
        configfiles = "".join(configfile.text for configfile in root.iter("configfile"))
        for param in params:
            assert f"${param}" in configfiles
            rendered = str(Template(f"${param}", searchList=[{param: "the-request"}]))
            assert rendered == "the-request", (name, param, rendered)


def test_a_job_whose_stdout_does_not_say_it_ran_to_its_end_fails():
    """A job its batch system killed leaves Galaxy no exit code file, which Galaxy's runners take
    for exit code 0 (seen with scancel under the Slurm CLI runner): the tools' <stdio> fails a job
    unless its stdout ends with the job's END_OF_JOB line."""
    for name in TOOL_FILES:
        exit_codes, regexes = get_tool_source(os.path.join(TOOLS_DIR, name)).parse_stdio()
        for stdout, expected in [
            (f"Copied a.txt (3 bytes)\nPeak memory of the transfer: 40 MiB\n{END_OF_JOB}\n", DETECTED_JOB_STATE.OK),
            ("Copied a.txt (3 bytes)\n", DETECTED_JOB_STATE.GENERIC_ERROR),
            ("", DETECTED_JOB_STATE.GENERIC_ERROR),
            (f"Sent a.txt (3 bytes)\nsaid {END_OF_JOB} in passing\n", DETECTED_JOB_STATE.GENERIC_ERROR),
        ]:
            state, *_ = check_output(regexes, exit_codes, stdout, "", 0)
            assert state == expected, (name, stdout)
        state, *_ = check_output(regexes, exit_codes, END_OF_JOB + "\n", "1 of 1 objects failed.", 1)
        assert state == DETECTED_JOB_STATE.GENERIC_ERROR  # a failure it reported: its exit code
