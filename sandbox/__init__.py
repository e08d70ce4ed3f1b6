"""The sandbox: the real system deployed into an embedded AWS emulator with a simulated hybrid fleet.

`python -m sandbox demo` (docs/sandbox.md). Modules: emulator (moto server + patches), moto (every change
to moto and botocore, through one registry), deploy (synthesized CDK app -> emulator), fleet (simulated `mi-`
servers and their SSM Agent), demo (a scenario end to end), invariants (safety checks), cli.
"""

import sys
from pathlib import Path

# The sandbox runs the repository's own code in-process: the engine (lambdas/, imported as `rotation` and
# `handlers`, as in the Lambda asset) and the agent contract (agent_scripts/keyrotation_contract.py).
REPO = Path(__file__).resolve().parent.parent
for _code_root in (REPO / "lambdas", REPO / "agent_scripts"):
    if str(_code_root) not in sys.path:
        sys.path.insert(0, str(_code_root))
