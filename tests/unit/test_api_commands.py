"""Progress reporting of ``opencues api …``: rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

from opencues.api_commands import Progress


def test_plain_progress_writes_lines(capsys):
    progress = Progress("uploading f.csv", total=2_000_000, plain=True)
    progress.advance(1_000_000)
    progress.finish("uploaded f.csv")
    err = capsys.readouterr().err
    assert "uploading f.csv: 1.0 / 2.0 MB" in err and "uploaded f.csv: 1.0 / 2.0 MB" in err


def test_rich_progress_draws_a_bar(capsys):
    progress = Progress("downloading x", total=100, plain=False)
    progress.advance(100)
    progress.finish("saved x")
    err = capsys.readouterr().err
    assert "saved x" in err and "━" in err


def test_plain_is_chosen_when_stderr_is_not_a_terminal(capsys):
    assert Progress("job", plain=None).plain is True


# What only a server or the database commands need: `opencues api …` talks HTTP (~0.3 s of CPU
# a command went to loading these; docs/decisions.md, "The processes the tests start").
NOT_FOR_API_COMMANDS = ("sqlalchemy", "pydantic", "pydantic_settings", "opencues.settings", "opencues.storage",
                        "opencues.accounts", "starlette", "uvicorn")  # fmt: skip

RUN_COMMAND = """
import json, sys
from opencues.cli import main

try:
    main(sys.argv[2:], prog_name="opencues")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "loaded": sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)}))
"""


def test_api_commands_load_no_server_modules(tmp_path):
    import json
    import os
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    class Jobs(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"id": self.path.rsplit("/", 1)[-1], "status": "COMPLETED", "events": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jobs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        connection = ["--base-url", f"http://127.0.0.1:{server.server_address[1]}", "--key", "k", "--secret", "s", "--account", "a"]
        done = subprocess.run(
            [sys.executable, "-c", RUN_COMMAND, json.dumps(NOT_FOR_API_COMMANDS), "api", *connection, "jobs", "wait", "j1"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        server.shutdown()
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stdout + done.stderr
    assert json.loads("".join(done.stdout.splitlines()[:-1]))["status"] == "COMPLETED"
    assert result["loaded"] == []


def test_an_unreachable_server_is_an_error_line_not_a_traceback():
    import socket

    from click.testing import CliRunner

    from opencues.cli import main

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection = ["--base-url", f"http://127.0.0.1:{port}", "--key", "k", "--secret", "s", "--account", "a"]
    result = CliRunner().invoke(main, ["api", *connection, "jobs", "wait", "j1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: cannot reach the API server: "), result.output
