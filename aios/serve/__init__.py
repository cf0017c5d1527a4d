"""aios serve: the models over HTTP, speaking the OpenAI API, with a browser playground.

Only the command is imported here, so `import aios.serve` needs nothing beyond the core; the
app (`aios.serve.app.create_app`) needs the `serve` extra: starlette, uvicorn,
prometheus-client.
"""

from aios.serve.command import add_serve_command
from aios.serve.settings import ServeSettings

__all__ = ["ServeSettings", "add_serve_command"]
