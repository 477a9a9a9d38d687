"""``cuma serve``: an OpenAI-compatible server that answers each request with its speaker's profile.

    engine = Engine(model, tokenizer, encoder, template, name="my-adapter")  # or Engine.from_adapter_dir
    app = build_app(engine, ServeConfig(max_batch_size=8))
    run_server(app, config)  # or ServerThread(app, config) in tests

Pieces, one per module: `config` (ServeConfig), `protocol` (request models), `profiles` (profile
checks, rendering, encoding cache), `jobs` and `planning` (requests -> jobs), `decoding` (per-row
text and stops inside a batch), `engine` (model calls), `batcher` (micro-batching, bounded queue),
`responses` and `streaming` (OpenAI bodies and SSE), `errors`, `page` (GET /), `app`, `server`, `cli`.
"""

from cuma.lazy import lazy_exports

_EXPORTS = {
    "Engine": "cuma.serve.engine",
    "ServeConfig": "cuma.serve.config",
    "ServerThread": "cuma.serve.server",
    "build_app": "cuma.serve.app",
    "run_server": "cuma.serve.server",
}

__all__ = list(_EXPORTS)

# Lazy, so that `cuma --help` (which imports cuma.serve.cli) loads neither torch nor FastAPI.
__getattr__ = lazy_exports("cuma.serve", _EXPORTS)
