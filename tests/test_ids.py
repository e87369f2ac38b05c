"""core/ids.py: ids from the operating system's CSPRNG, through a pool that never hands a byte
out twice, in threads or across a fork."""

import os
import re
import threading
from collections import Counter

from core import ids


def test_ids_have_their_prefix_and_twenty_characters_of_the_alphabet():
    assert re.fullmatch(r"log_[A-Za-z0-9]{20}", ids.make_id("log"))


def test_threads_making_ids_at_once_never_get_the_same_one():
    made: list[str] = []

    def make() -> None:
        made.extend(ids.make_id("req") for _ in range(2000))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == len(made) == 16000


def test_a_forked_child_does_not_reuse_the_parents_pool():
    ids.make_id("x")  # the pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write, ids.make_id("x").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child != ids.make_id("x")


def test_characters_are_uniform_enough():
    counts = Counter("".join(ids.random_string(62) for _ in range(2000)))
    assert len(counts) == 62
    assert max(counts.values()) < 1.25 * min(counts.values())
