# Windows servers are not supported yet (docs/agent.md, "Windows"): the engine refuses them before it sends this
# document, and the document carries the agent once, for Linux (SSM's 64 KB limit does not fit two copies).
# Run by hand on Windows, this step says so and fails.
Write-Output '@RESULT:unsupported_platform@'
exit @EXIT:unsupported_platform@
