"""Run Command documents (the contract with the engine) and their rendering with the agent inlined."""
