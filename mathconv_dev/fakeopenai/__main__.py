"""`python -m mathconv_dev.fakeopenai --port P [options]`: the server without Django settings
(the converter then uses its built-in size limits). `manage.py fake_openai` is the same."""

import argparse

from mathconv_dev.fakeopenai.cli import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m mathconv_dev.fakeopenai", description=__doc__)
add_arguments(parser)
run(vars(parser.parse_args()))
