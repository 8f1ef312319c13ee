"""`sagvideo ui`: a Gradio page (and API endpoint) over the same job code as the command line.

Modules, one job each: `launch` (the CLI subcommand, its torch-free checks, serving), `settings`
(the page's fields -> a validated Config, torch-free), `jobs` (one run: checks, the step
callback, cancel, the messages for bad input), `cache` (networks loaded once per model config),
`page` (the Gradio layout and its events). Importing this package imports neither gradio nor torch.
"""

INSTALL_HINT = 'the page needs the optional "ui" extra. To fix: pip install "sagvideo[ui]"'
