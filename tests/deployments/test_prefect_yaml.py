"""deployments/prefect.yaml: every entrypoint imports as a flow and every deployment's parameters validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_the_entrypoint_is_a_flow_and_the_parameters_validate(deployment, monkeypatch):
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the repository root, as `prefect deploy` reads them
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert validated["source"] == deployment["parameters"]["source"]
    assert deployment["work_pool"]["name"] == "segflow"


def test_a_bad_parameter_is_refused_before_the_run():
    from prefect.exceptions import ParameterTypeError

    flow = load_flow_from_entrypoint(str(ROOT / "flows" / "segment_users.py") + ":segment_users")
    with pytest.raises(ParameterTypeError, match="k must be at least 2"):
        flow.validate_parameters({"source": "demo", "settings": {"k": 1}})
