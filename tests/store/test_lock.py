"""mmrag.store.lock: one process per embedded path; stores in one process share it."""

from __future__ import annotations

import time

from store_helpers import run_python

import mmrag
from mmrag.store import MultimodalStore


def test_second_process_fails_fast(tmp_path, clip_encoder) -> None:
    path = tmp_path / "db"
    with MultimodalStore(clip_encoder, path=path) as opened:
        opened.add_texts(["held"])
        started = time.monotonic()
        result = run_python(f"""
            import mmrag
            from mmrag.store import MultimodalStore
            try:
                MultimodalStore.recorded_model({str(path)!r})
            except mmrag.StoreLockedError as exc:
                print("LOCKED", exc)
        """)
        assert time.monotonic() - started < 60
        assert "LOCKED" in result.stdout and "already open in process" in result.stdout, result.stderr
    # Closed: the other process may open it now.
    result = run_python(
        f"from mmrag.store import MultimodalStore; print(MultimodalStore.recorded_model({str(path)!r}))"
    )
    assert result.stdout.strip() == clip_encoder.model_id, result.stderr


def test_stores_in_one_process_share_the_path_until_the_last_closes(tmp_path, clip_encoder) -> None:
    path = tmp_path / "db"
    first = MultimodalStore(clip_encoder, path=path)
    second = MultimodalStore(clip_encoder, path=path)
    first.add_texts(["shared"])
    assert second.count() == 1
    first.close()
    first.close()  # closing twice releases once
    locked = run_python(f"""
        import mmrag
        try:
            mmrag.MultimodalStore.recorded_model({str(path)!r})
        except mmrag.StoreLockedError:
            print("LOCKED")
    """)
    assert "LOCKED" in locked.stdout, locked.stderr
    second.close()
    assert mmrag.MultimodalStore.recorded_model(path) == clip_encoder.model_id
