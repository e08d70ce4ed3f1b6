"""A state's name leads to its code in one lookup: infra/constructs/steps.py `STEPS` registers every Task of
the three machines, with a handler module that exists and a domain function that handler calls."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from infra_synth import Synth, step_resolver

from infra.constructs.steps import STEPS, Step

MACHINES = {"rotation": "WorkflowsRotation", "scheduled": "WorkflowsScheduled", "audit": "WorkflowsAudit"}


def test_every_task_state_runs_the_registered_step_of_its_name_on_its_machine(synth: Synth) -> None:
    step_of = step_resolver(synth.template)
    ran: set[str] = set()
    for machine, prefix in MACHINES.items():
        for name, state in synth.machine(prefix)["States"].items():
            if state["Type"] != "Task":
                continue
            # GIVEN a Task state of the synthesized machine THEN the function it invokes runs the step of
            # the state's name, registered for this machine
            step = step_of(state["Resource"])
            assert step == name, (prefix, name, step)
            assert step in STEPS and STEPS[step].machine == machine, (prefix, step)
            ran.add(step)
    # AND every registered step is some machine's Task: the registry lists no step nothing runs
    assert ran == set(STEPS)


def test_the_registry_names_every_handler_module_once_and_nothing_else() -> None:
    # GIVEN the handler package on disk THEN each module (but the `_` helpers) is one registered step
    import handlers

    modules = {m.name for m in pkgutil.iter_modules(handlers.__path__) if not m.name.startswith("_")}
    assert set(STEPS) == modules
    assert all(name == step.name for name, step in STEPS.items())


@pytest.mark.parametrize("step", STEPS.values(), ids=lambda step: step.name)
def test_a_step_leads_to_its_handler_and_the_domain_function_it_calls(step: Step) -> None:
    # GIVEN the registered handler module THEN it exists and exposes the Lambda entry point `handler`
    module = importlib.import_module(step.module)
    assert callable(module.handler)
    assert step.handler == f"{module.__name__}.handler"
    # AND the domain function exists, is a plain function, and the handler module reaches it (imported by
    # name, or through its module) and calls it
    domain_module, _, function_name = step.domain.rpartition(".")
    domain = getattr(importlib.import_module(domain_module), function_name)
    assert inspect.isfunction(domain) and domain.__module__ == domain_module
    reachable = [name for name, value in vars(module).items()
                 if value is domain or inspect.ismodule(value) and vars(value).get(function_name) is domain]
    assert reachable, f"{step.module} does not import {step.domain}"
    assert f"{function_name}(" in inspect.getsource(module), f"{step.module} does not call {step.domain}"
