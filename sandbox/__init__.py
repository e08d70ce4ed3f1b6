"""The sandbox: the real system deployed into an embedded AWS emulator with a simulated hybrid fleet.

`python -m sandbox demo` (docs/sandbox.md). Modules: emulator (moto server + patches), moto (every change
to moto and botocore, through one registry), synth (the sandbox's settings, the CDK app synthesized with
them), deploy (template -> emulator), provision (the operator's users, first keys, servers), fleet (simulated
`mi-` servers and their SSM Agent), warm_python* (their warm `python3`), demo (a scenario end to end),
invariants (safety checks), cli.
"""
