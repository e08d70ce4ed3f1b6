"""The sandbox: the real system deployed into an embedded AWS emulator with a simulated hybrid fleet.

`python -m sandbox demo` (docs/sandbox.md). Modules: emulator (moto server + patches), moto (every change
to moto and botocore, through one registry), synth (the sandbox's settings, the CDK app synthesized with
them), deploy (template -> emulator), provision (the operator's users, first keys, servers), fleet (simulated
`mi-` servers and their SSM Agent), warm_python* (their warm `python3`), demo (a scenario end to end),
invariants (safety checks), cli.
"""

import sys
from pathlib import Path

# The sandbox runs the repository's own code in-process, and this is the one place that puts it on sys.path:
# the engine (lambdas/, imported as `rotation` and `handlers`, as in the Lambda asset) and the agent contract
# (agent_scripts/keyrotation/contract.py).
REPO = Path(__file__).resolve().parent.parent
for _code_root in (REPO / "lambdas", REPO / "agent_scripts"):
    if str(_code_root) not in sys.path:
        sys.path.insert(0, str(_code_root))
