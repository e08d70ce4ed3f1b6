"""P6's model is driven by the synthesized definition: it counts what the machine would record, and a
machine that waits for its rotations (the old `.sync` Map) fails the target."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bench import throughput

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return throughput.production_template(Path(tmp_path_factory.mktemp("production")))


def test_the_scheduled_run_of_150_due_users_as_the_definition_records_it(template: dict[str, Any]) -> None:
    (record,) = throughput.model(template, [150])
    # GIVEN the production settings (180 starts a minute, 100 users a page) WHEN 150 users are due
    # THEN two select_due calls start all of them: 2 execution + 2 begin + 2 × (5 task + 2 choice) + 2 done
    assert (record["started"], record["pages"], record["history_events"]) == (150, 2, 20)
    assert record["waits_for_children"] is False and record["met"] is True
    assert 500 < record["max_state_bytes"] < 2000
    # AND the run lasts its pacing: 150 starts at 3 a second, plus the key reads
    assert 149 / 3 <= record["last_start_seconds"] <= 149 / 3 + 30
    assert record["last_finish_hours"] == pytest.approx(record["last_start_hours"] + record["rotation_hours"],
                                                        abs=0.01)


def test_a_scheduled_machine_that_waits_for_its_rotations_is_flagged(template: dict[str, Any]) -> None:
    from sandbox.asl import state_machines

    (definition,) = [d for lid, d in state_machines(copy.deepcopy(template)).items()
                     if lid.startswith("WorkflowsScheduled")]
    resources = template["Resources"]

    def step_of(resource: str) -> str:
        return str(resources[resource.rsplit(":", 1)[-1]]["Properties"]["Handler"]).split(".")[1]

    settings = throughput.production_settings(10)[0]
    assert throughput.walk_scheduled(definition, step_of, settings).waits_for_children is False
    # GIVEN the old design planted back: a Map of startExecution.sync children
    definition["States"]["rotate_due_users"] = {
        "Type": "Map", "ItemsPath": "$.selection.due", "End": True,
        "ItemProcessor": {"StartAt": "start", "States": {"start": {
            "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2", "End": True}}}}
    # THEN the walk flags it (the target then fails, whatever the figures)
    assert throughput.walk_scheduled(definition, step_of, settings).waits_for_children is True
