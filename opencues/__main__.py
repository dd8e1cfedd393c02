"""``python -m opencues`` and the ``opencues`` command.

The command starts with garbage collections off: a start imports and builds ~130,000 objects
that live as long as the process, and collections walking them again and again while they are
made cost a server ~60 ms of its start (then ~40 ms more for the full collection before the
freeze; see ``opencues.web.app``). ``opencues.cli.main`` turns them back on for every command
but ``serve`` and ``worker``, which do once started (``opencues.web.app._freeze_startup_objects``)."""

import gc


def run() -> None:
    gc.disable()
    from opencues.cli import main

    main()


if __name__ == "__main__":
    run()
