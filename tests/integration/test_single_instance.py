"""One running Lightbox per user: hand-over over a private local socket, stale sockets, other users."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

import pytest

from app.desktop import single_instance
from tests.conftest import ROOT

CLIENT = ("import sys; from app.desktop.single_instance import hand_over; "
          "sys.exit(0 if hand_over(sys.argv[1:]) else 3)")
# The running instance, in a process of its own: prints READY, then each request as a JSON line.
SERVER = """
import json, sys, threading
from PySide6.QtCore import QCoreApplication, QTimer
from app.desktop.single_instance import Instance
app = QCoreApplication([])
inst = Instance()
print("READY" if inst.listen() else "TAKEN", flush=True)
inst.received.connect(lambda argv, sent: print(json.dumps(argv), flush=True))
stdin_closed = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
poll = QTimer()
poll.timeout.connect(lambda: stdin_closed.is_set() and app.quit())
poll.start(50)
app.exec()
inst.close()
"""


def env():
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


@pytest.fixture
def instance():
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout.readline().strip() == "READY"
    yield server
    server.stdin.close()
    assert server.wait(15) == 0  # and it quits cleanly


def client(*argv):
    return subprocess.Popen([sys.executable, "-c", CLIENT, *argv], cwd=ROOT, env=env())


def test_ten_links_in_a_second_all_reach_the_running_instance(instance):
    links = [f"lightbox://open-image-url/?location=https%3A%2F%2Fa.example%2F{n}.dcm" for n in range(10)]
    started = time.monotonic()
    clients = []
    for link in links:
        clients.append(client("open", link))
        time.sleep(0.09)
    assert time.monotonic() - started < 1.2
    assert [c.wait(15) for c in clients] == [0] * 10  # each was confirmed by the instance
    received = [json.loads(instance.stdout.readline()) for _ in links]
    assert sorted(argv[1] for argv in received) == sorted(links)


def test_a_second_instance_does_not_take_over(instance):
    second = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert second.stdout.readline().strip() == "TAKEN"
    second.stdin.close()
    second.wait(15)


def test_without_a_running_instance_hand_over_says_no():
    assert client("open", "lightbox://x").wait(15) == 3


def test_a_stale_socket_from_a_crash_does_not_block_the_next_start():
    if sys.platform == "win32":
        return  # named pipes vanish with their process
    path = single_instance.server_name()
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: what a killed instance leaves
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(f"{path}.lock", "w") as lock:  # and its lock, naming a process that no longer exists
        lock.write(f"{gone.stdout.strip()}\nlightbox\n\n")
    assert os.path.exists(path)
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout.readline().strip() == "READY"
    assert client("open", "lightbox://x").wait(15) == 0
    server.stdin.close()
    assert server.wait(15) == 0


def test_the_socket_is_private_to_this_user(instance):
    if sys.platform == "win32":
        return
    path = single_instance.server_name()
    folder = os.path.dirname(path)
    assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0
    assert os.stat(path).st_uid == os.getuid()
    setpriv = shutil.which("setpriv")
    if os.getuid() == 0 and setpriv:  # as another user: refused
        probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX)\n"
                 "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(type(e).__name__); sys.exit(0)\n"
                 "print('connected'); sys.exit(1)")
        done = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                               "-c", probe, path], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == "PermissionError"
