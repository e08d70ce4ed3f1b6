"""The key rotation agent, as a package: run it with ``python3 keyrotation_agent.py`` (beside this
directory), or through the Run Command document, which ships both.

Modules, in the order a rotation uses them: ``contract`` (shared with the engine and the document; standard
library only, and the only module the Lambda asset carries), ``base``, ``parameters``, ``paths``, ``files``,
``credentials``, ``aws``, ``owner``, ``hooks``, ``actions``, ``main``. Importing the package imports none of
them.
"""
