"""The recipe builder: recipes made from the data, proven on it before they are saved.

- ``tools``: the tools over a session's real data (``run_tool(name, arguments, context)``),
  used by the model and by the deterministic builder alike; ``runner`` runs them in this
  process or in a child process (the app).
- ``design`` → ``recipe_sql`` → ``words``: the deterministic builder (``builder.suggest``):
  keys, amounts, sign conventions, tolerance, date window, counterparty, one-to-one.
- ``preview``: a recipe run through ``kalla.pipeline.run`` on the sources, explained.
- ``session`` and ``conversation``: a turn answered by the ``anthropic`` SDK, or by the
  builder without a key, as typed ``events``.
- ``files``: ``kalla suggest LEFT RIGHT``.

See docs/agent.md.
"""

from kalla.agent.builder import Suggestion, suggest
from kalla.agent.context import SessionSource, ToolContext
from kalla.agent.tools import run_tool

__all__ = ["SessionSource", "Suggestion", "ToolContext", "run_tool", "suggest"]
