"""manage.py serve: run the web server, a Celery worker and Celery beat together (``make run``).

A small supervisor: it starts the three processes, forwards SIGINT/SIGTERM to them, and stops
all of them when any one exits, so a crashed worker never leaves a half-running Custody.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Start gunicorn, a Celery worker and Celery beat; stop them all together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("CUSTODY_BIND", "127.0.0.1:8000"))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
        parser.add_argument("--no-celery", action="store_true", help="Web server only.")

    def handle(self, *args: Any, **options: Any) -> None:
        bin_dir = os.path.dirname(sys.executable)
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "governance.wsgi",
                "--bind",
                options["bind"],
                "--workers",
                str(options["web_workers"]),
                "--access-logfile",
                "-",
                "--timeout",
                "120",
            ]
        }
        if not options["no_celery"]:
            celery = os.path.join(bin_dir, "celery")
            commands["worker"] = [celery, "-A", "governance", "worker", "--loglevel", "INFO", "--concurrency", "1"]
            commands["beat"] = [
                celery,
                "-A",
                "governance",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(settings.VAR_DIR / "celerybeat-schedule"),
            ]
        procs = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(f"Custody is starting at http://{options['bind']}/ (admin at /admin/); Ctrl-C stops it.")
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exited = None
        while not stopping and exited is None:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    exited = name
                    break
            time.sleep(0.5)
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        if exited is not None:
            self.stderr.write(f"{exited} exited with status {procs[exited].returncode}; stopped the others.")
            sys.exit(1)
