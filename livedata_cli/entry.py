"""The ``livedata`` console script: Ctrl-C is handled before anything heavy is imported.

Importing the command line (Typer, Click, the commands) takes a noticeable
fraction of a second; a SIGINT then must end as one line and exit 130 too,
not as a traceback.
"""

from __future__ import annotations


def main() -> int:
    from livedata_cli import interrupt

    interrupt.install()
    try:
        from livedata_cli.cli import main as run
    except KeyboardInterrupt:
        return interrupt.finish(130)
    try:
        code = run()
    except KeyboardInterrupt:  # between the command's end and here
        code = 130
    return interrupt.finish(code)
