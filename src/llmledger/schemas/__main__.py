"""``python -m llmledger.schemas``: write the shipped schema files again from the models."""

from __future__ import annotations

from llmledger.schemas import write

for _path in write():
    print(_path)
