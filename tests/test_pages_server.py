"""ui/server.py: what the server process does around every page's run to hand freed memory back."""

import ui.server as server


class FakeGlibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_large_blocks_get_their_own_mapping_once(monkeypatch):
    glibc = FakeGlibc()
    monkeypatch.setattr(server, "GLIBC", glibc)
    monkeypatch.setitem(server._state, "threshold_set", False)
    server.map_large_blocks_apart()
    server.map_large_blocks_apart()
    assert glibc.calls == [("mallopt", server.M_MMAP_THRESHOLD, server.MMAP_THRESHOLD_BYTES)]


def test_the_heaps_are_trimmed_only_after_the_process_grew(monkeypatch):
    glibc, resident = FakeGlibc(), [500.0]
    monkeypatch.setattr(server, "GLIBC", glibc)
    monkeypatch.setattr(server, "resident_mib", lambda: resident[0])
    monkeypatch.setitem(server._state, "after_last_trim", 0.0)
    assert server.return_freed_memory()  # first run: grown from nothing
    resident[0] += server.GROWTH_MIB / 2
    assert not server.return_freed_memory()  # a rerun that allocated little: no heap walk
    resident[0] += server.GROWTH_MIB
    assert server.return_freed_memory()
    assert [call[0] for call in glibc.calls] == ["malloc_trim", "malloc_trim"]


def test_without_glibc_nothing_is_called(monkeypatch):
    monkeypatch.setattr(server, "GLIBC", None)
    monkeypatch.setitem(server._state, "after_last_trim", 0.0)
    assert not server.return_freed_memory()
    server.map_large_blocks_apart()


def test_resident_size_is_read_from_proc():
    assert server.resident_mib() > 10  # this Python process, numpy and all
