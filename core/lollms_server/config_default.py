"""The commented default config file written on first run (the embedded defaults)."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9601

DEFAULT_CONFIG_TEXT = f"""\
# lollms-server configuration, written on first run. Every key is optional.
# Environment overrides: LOLLMS_HOST, LOLLMS_PORT, LOLLMS_CONFIG (this file), LOLLMS_DATA_DIR.

[server]
host = "{DEFAULT_HOST}"     # 0.0.0.0 listens on every interface
port = {DEFAULT_PORT}
# data_dir = "~/.lollms-server"   # SQLite database, models/, personalities/
max_body_mb = 64           # larger request bodies and uploads get 413 (routes that take media)
max_text_body_mb = 8       # the same for routes that take no media (tokenize, keys, page forms...)
body_timeout_s = 60        # a body not fully received by then gets 408 (slow or stalled clients)
max_json_values = 300000   # a JSON body with more commas (values) gets 413 before it is parsed
max_list_items = 4096      # input_data items or chat messages in one request; more get 422
max_token_ids = 262144     # token ids in one request (detokenize, Ollama context); more get 422
max_form_fields = 1024     # fields of one urlencoded form; more get 413
max_form_parts = 64        # parts of one multipart form (slower to parse); more get 413
max_form_field_kb = 1024   # one text field of a form; larger gets 413 (files: max_body_mb)
request_timeout_s = 300    # a generation that takes longer gets 504
drain_timeout_s = 30       # SIGTERM: ready and new generations get 503, in-flight work this long
log_level = "info"         # debug | info | warning | error
log_format = "auto"        # auto: text on a terminal, else json (one object per line) | json | text

# Binding instances: [bindings.<instance>] with type = "<binding type>" plus that type's
# settings (see `lollms-server plugins`). The built-in `echo` type needs no backend.
[bindings.echo]
type = "echo"
default_model = "echo"     # unset: the binding's default model for each generation type
# max_concurrent = 4       # generations per model at once (default: what the backend runs in
#                          # parallel; remote bindings such as openai and ollama: no cap)
# default_max_tokens = 4096  # max_tokens of a text request that sets none (within the context)

# Default instance (optionally "<instance>/<model>") per generation type:
# ttt text, tti text-to-image, i2i image-to-image, tts speech, stt transcription,
# ttv video, ttm music, audio2audio.
[defaults]
ttt = "echo"
tti = "echo"
i2i = "echo"
tts = "echo"
stt = "echo"
ttv = "echo"
ttm = "echo"
audio2audio = "echo"

[resources]
queue_size = 64            # generations waiting per model beyond its concurrency; more get 503
queue_timeout_s = 300      # longest wait in a queue before a 503
first_token_timeout_s = 0  # a stream with no first chunk by then gets 504 (0 = only the total)

# Model lifecycle (bindings that load and unload models): how many models may be loaded, idle
# time before unloading (-1 = never, 0 = right after each request), and models never unloaded
# ("inst/model" or "inst").
max_loaded_models = 0      # 0 = no limit (per instance: [bindings.x] max_loaded_models)
keep_alive_s = 300
pinned = []

# Memory budgets per device, as bytes, "8GiB" or a percentage of the device ("75%"). RAM:
# ram_budget caps what the loaded models take (unset = no cap); a load must leave ram_reserve
# available (measured; 0 = not checked). Each GPU (read through NVML): gpu_budget (unset = no
# cap) and gpu_reserve, one size for every GPU or a table per GPU: {{ "cuda:1" = "90%" }}.
# ram_budget = "75%"
ram_reserve = 0
# gpu_budget = "90%"
gpu_reserve = "512MiB"
# Where models go: a binding that places models on GPUs gets the GPU with the most room (unloading
# idle models there if needed), else RAM. Pin an instance or one model to "cpu", "gpu" (any GPU)
# or "cuda:<n>":
# devices = {{ "local-llama" = "cuda:1", "sd/sdxl" = "cuda:0" }}

[resilience]
failure_threshold = 5      # backend failures within window_s that open an instance's circuit
window_s = 30
cooldown_s = 30            # an open circuit refuses calls this long, then lets one trial through
health_interval_s = 30     # background health checks (backing off while down; 0 = off)
restart_limit = 5          # restarts of crashed managed processes per restart_window_s (0 = none)
restart_window_s = 600

# Routes: a model alias served by an ordered list of targets (the next serves when one is
# down, its circuit open or its queue full), or a table with targets and strategy = "least-busy"
# (fewest generations running or queued, as remote nodes report them on each answer) or
# "most-room" (the most free memory for the model, as remote nodes report it)
# [routes]
# "chat-default" = ["gpu-box/llama3", "openai/gpt-4o-mini"]

# A fleet: lollms-server nodes this server fronts, one `lollms` instance each (named after the
# node's host and port, e.g. gpu1-9601; needs plugins/lollms-remote). A route
# {{fleet = true}} has every node listing the model as a target (least busy first).
# [fleet]
# nodes = ["http://gpu1:9601", "http://gpu2:9601"]
# api_key_env = "LOLLMS_FLEET_KEY"   # the nodes' key from this variable, or:
# api_key = "..."                    # a key of the nodes, written here
# [routes]
# "llama3" = {{fleet = true}}  # or {{fleet = true, model = "llamacpp/llama3"}}

[personalities]
folders = []               # extra folders besides <data_dir>/personalities (read in this order)
examples = true            # also offer the shipped examples (any source may replace one by name)

[functions]
folders = []               # extra folders of *.py function files besides <data_dir>/functions
allow_unsafe = []          # unsafe functions (files, shell, network) to enable, or ["*"]
max_steps = 5              # most model turns of one function-calling loop
timeout_s = 30             # time limit of one function call
max_result_chars = 65536   # a longer result is an error fed to the model, not sent on

# Keys and the audit log: the SQLite file in the data dir unless a URL is set. Replicas share
# one PostgreSQL database (pip install 'lollms-server[postgres]'); see docs/deployment.md.
[storage]
# url = "postgresql://lollms@db-host:5432/lollms"   # or sqlite:////absolute/path.sqlite
# url_env = "LOLLMS_DATABASE_URL"   # read the URL (with its password) from this variable
pool_size = 10             # PostgreSQL connections per server process
connect_timeout_s = 10
statement_timeout_s = 5    # PostgreSQL: a key lookup or audit write waiting longer is a 503
migrate_on_start = true    # apply schema migrations at start; false: `lollms-server db upgrade`

[security]
local_access = true        # this machine (loopback peer, loopback Host, same origin) needs no key
trusted_proxies = []       # believe X-Forwarded-For/-Proto only from these addresses/CIDRs
cors_origins = []          # browser origins allowed to call the API (CORS is off when empty)
ip_rpm = 0                 # requests per minute per client IP (0 = no limit)
key_rpm = 0                # default requests per minute per key (a key's own limit wins)
key_tpm = 0                # default text tokens per minute per key
key_concurrent = 0         # default concurrent generations per key
rate_limit_storage = "async+memory://"   # per process; async+redis://host:6379 shares limits
# rate_limit_storage_env = "LOLLMS_REDIS_URL"   # the URI (with its password) from this variable
rate_limit_window_s = 60   # the window of the *_rpm / *_tpm limits, in seconds
rate_limit_on_storage_error = "allow"   # Redis unreachable: allow (logged) or refuse (503)
audit_retention_days = 90
audit_prompts = false      # true also logs prompt text in the audit log
audit_failure_interval_s = 60   # auth failures: one audit row per address and reason per interval

[tracing]
enabled = false            # OpenTelemetry spans (needs: pip install 'lollms-server[tracing]')
endpoint = "http://127.0.0.1:4318/v1/traces"   # an OTLP/HTTP collector (Jaeger, Tempo, otelcol)
headers_env = "OTEL_EXPORTER_OTLP_HEADERS"     # env var with the exporter's headers: k=v,k2=v2
sample_ratio = 1.0         # share of new traces kept; a caller's sampled flag is followed
service_name = "lollms-server"
export_timeout_s = 10
"""
