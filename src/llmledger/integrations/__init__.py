"""Integrations that record calls as they happen: each module imports its SDK only when used.

- :mod:`llmledger.integrations.openai` — ``instrument_openai(client, ledger)``
- :mod:`llmledger.integrations.anthropic` — ``instrument_anthropic(client, ledger)``
- :mod:`llmledger.integrations.langchain` — ``LedgerCallbackHandler(ledger)``
- :mod:`llmledger.integrations.litellm` — ``LedgerLiteLLMCallback(ledger)``

See docs/integrations.md.
"""
