"""The sandbox: the real system deployed into an embedded AWS emulator with a simulated hybrid fleet.

`python -m sandbox demo` (docs/sandbox.md). Modules: emulator (moto server + patches), moto (every change
to moto and botocore, through one registry), deploy (synthesized CDK app -> emulator), fleet (simulated `mi-`
servers and their SSM Agent), demo (a scenario end to end), invariants (safety checks), cli.
"""
