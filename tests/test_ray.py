"""mmrag.ray on a real local Ray (``ray.init(num_cpus=2)``, one session for the module) and a real ``chroma run``.

A few hundred tiny images and the bundled demo model. The failure tests kill an actor with ``ray.kill`` and stop
the Chroma server from inside a batch (the ``on_batch`` hook), so the moment is exact.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mmrag
from mmrag.store import MultimodalStore
from mmrag.testing import speckled_image

pytest.importorskip("ray.data")

sys.path.insert(0, str(Path(__file__).parent / "store"))
from test_chroma_server import _free_port, _start_server  # the store tests' `chroma run` helper

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

N_IMAGES = 200


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray

    from mmrag.ray import init_ray

    if ray.is_initialized():  # pragma: no cover - another module's session
        ray.shutdown()
    init_ray("local", num_cpus=2, num_gpus=0, object_store_memory=200 * 1024 * 1024)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """``N_IMAGES`` distinct small images in two folders, two texts, and one corrupt image."""
    folder = tmp_path_factory.mktemp("ray") / "photos"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(N_IMAGES):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        speckled_image(colour, seed=n, size=24, dots=12).save(folder / ("more" if n % 2 else "") / f"img{n:03d}.png")
    (folder / "note.txt").write_text("a note about red things", encoding="utf-8")
    (folder / "more" / "sea.md").write_text("# Blue\nsomething about the sea", encoding="utf-8")
    (folder / "broken.png").write_bytes(b"not a png at all")
    return folder


class _Server:
    def __init__(self, data: Path) -> None:
        self.data, self.port = data, _free_port()
        self.process = _start_server(data, self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import chromadb

        return chromadb.HttpClient(host="127.0.0.1", port=self.port)

    def restart(self) -> None:
        self.stop()
        self.process = _start_server(self.data, self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[_Server]:
    started = _Server(tmp_path_factory.mktemp("chroma"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def demo() -> mmrag.Encoder:
    return mmrag.load_encoder("demo", device="cpu")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_embed_dataset_equals_embed_images_on_the_same_files(ray_session, photos, demo) -> None:
    import ray

    from mmrag.ray import embed_dataset

    files = sorted(photos.rglob("img*.png"))[:40]
    ds = ray.data.read_binary_files([str(f) for f in files], include_paths=True)
    rows = embed_dataset(ds, model="demo", device="cpu", batch_size=16).take_all()
    assert len(rows) == len(files)
    by_path = {Path(row["path"]).name: np.asarray(row["embedding"]) for row in rows}
    got = np.stack([by_path[f.name] for f in files])
    assert got.shape == (len(files), demo.dim) and got.dtype == np.float32
    assert _cos(got, demo.embed_images(files)).min() >= 0.9999


def test_the_actor_takes_a_column_of_paths_or_of_texts(photos, demo) -> None:
    from mmrag.ray.embed import BatchEmbedder

    files = sorted(photos.rglob("img*.png"))[:6]
    images = BatchEmbedder("demo", mmrag.LoadOptions(device="cpu"), "image", "image", "vector")
    out = images({"image": np.array([str(f) for f in files], dtype=object), "n": np.arange(6)})
    assert list(out["n"]) == list(range(6)) and out["vector"].shape == (6, demo.dim)
    assert _cos(out["vector"], demo.embed_images(files)).min() >= 0.9999
    texts = ["a red circle", "a blue square"]
    embed_texts = BatchEmbedder("demo", mmrag.LoadOptions(device="cpu"), "text", "text", "embedding")
    assert _cos(embed_texts({"text": np.array(texts)})["embedding"], demo.embed_texts(texts)).min() >= 0.9999
    with pytest.raises(mmrag.InvalidInputError, match="column 'image' is not in the dataset"):
        images({"bytes": np.array([b"x"], dtype=object)})


def _kill_this_actor_once(marker: str):
    def hook() -> None:
        import ray

        if not os.path.exists(marker):
            Path(marker).write_text("killed", encoding="utf-8")
            ray.kill(ray.get_runtime_context().current_actor, no_restart=False)

    return hook


def test_index_folder_ray_matches_index_folder_and_survives_a_killed_actor(
    ray_session, photos, server, demo, tmp_path, monkeypatch
) -> None:
    from transformers import AutoModel

    from mmrag.ray import index_folder_ray

    marker = tmp_path / "killed"
    driver_loads: list[object] = []
    with monkeypatch.context() as patch:  # in this (the driver's) process only: the actors load their own
        patch.setattr(AutoModel, "from_pretrained", lambda *a, **k: driver_loads.append(a) or None)
        report = index_folder_ray(
            photos, model="demo", client=server.client(), collection="rayed", device="cpu", batch_size=16,
            on_batch=_kill_this_actor_once(str(marker)),
        )  # fmt: skip
    assert driver_loads == []  # the driver opened the store from the model's config alone
    assert marker.exists()  # an actor was killed mid-run, and Ray retried its batch on a new one
    assert (report.added, report.skipped, report.embedded) == (N_IMAGES + 2, 0, N_IMAGES + 2)
    assert [(Path(source).name, reason) for source, reason in report.failed] == [
        ("broken.png", report.failed[0][1])
    ] and "broken.png" not in report.failed[0][1]
    assert len(set(report.ids)) == N_IMAGES + 2

    store = MultimodalStore(demo, client=server.client(), collection="rayed")
    assert (store.count("image"), store.count("text")) == (N_IMAGES, 2)  # complete, no duplicates
    probe = photos / "more" / "img007.png"
    assert store.search(probe, k=1, modality="image")[0].source == str(probe)
    texts = {hit.source for hit in store.search("something about the sea", k=5, modality="text")}
    assert texts == {str(photos / "more" / "sea.md"), str(photos / "note.txt")}

    # the same folder indexed in-process into an embedded store gives the same ids
    with MultimodalStore(demo, path=tmp_path / "db", collection="rayed") as local:
        assert sorted(local.index_folder(photos).ids) == sorted(report.ids)

    again = store.index_folder(photos)  # a later plain index run skips everything
    assert (again.skipped, again.embedded, again.added, again.removed) == (N_IMAGES + 2, 0, 0, 0)
    assert index_folder_ray(photos, model="demo", client=server.url, collection="rayed", device="cpu").embedded == 0


def _stop_server_at(pid: int, marker: str, after: int):
    def hook() -> None:
        count = int(Path(marker).read_text(encoding="utf-8") or 0) if os.path.exists(marker) else 0
        Path(marker).write_text(str(count + 1), encoding="utf-8")
        if count + 1 == after:
            os.kill(pid, signal.SIGKILL)

    return hook


def test_a_server_gone_mid_run_is_a_clear_error_and_a_rerun_completes(ray_session, photos, server, demo, tmp_path):
    from mmrag.ray import index_folder_ray

    marker = tmp_path / "batches"
    hook = _stop_server_at(server.process.pid, str(marker), after=4)
    with pytest.raises(ConnectionError, match=rf"Chroma server at 127\.0\.0\.1:{server.port} cannot be reached"):
        index_folder_ray(photos, model="demo", client=server.client(), collection="cut", device="cpu",
                         batch_size=16, on_batch=hook)  # fmt: skip
    server.restart()
    report = index_folder_ray(photos, model="demo", client=server.client(), collection="cut", device="cpu")
    assert 0 < report.skipped < N_IMAGES + 2  # what the first run wrote is kept
    assert report.skipped + report.added == N_IMAGES + 2
    store = MultimodalStore(demo, client=server.client(), collection="cut")
    assert (store.count("image"), store.count("text")) == (N_IMAGES, 2)
    assert store.index_folder(photos).skipped == N_IMAGES + 2


def test_the_cli_indexes_with_ray_into_a_server_and_searches_it(ray_session, server, tmp_path, capsys) -> None:
    from mmrag.cli import main
    from mmrag.server.settings import ServerSettings

    folder = tmp_path / "few"
    folder.mkdir()
    for n in range(6):
        speckled_image((40 * n, 200 - 30 * n, 90), seed=n, size=24).save(folder / f"p{n}.png")
    (folder / "bad.png").write_bytes(b"nope")
    common = ["--chroma-url", server.url, "--collection", "cli", "--device", "cpu"]
    assert main(["index", str(folder), *common, "--model", "demo", "--ray", "local"]) == 1  # bad.png failed
    out = capsys.readouterr().out
    assert "added 6, updated 0, skipped 0, removed 0, failed 1" in out and "bad.png" in out
    assert main(["index", str(folder), *common]) == 1  # the server's recorded model; everything skipped
    assert "added 0, updated 0, skipped 6" in capsys.readouterr().out
    assert main(["search", "--image", str(folder / "p3.png"), "--k", "1", "--json", *common]) == 0
    assert '"source": "' + str(folder / "p3.png") in capsys.readouterr().out
    assert main(["index", str(folder), "--ray", "--collection", "cli"]) == 2
    assert "--ray writes into a Chroma server" in capsys.readouterr().err
    assert ServerSettings(chroma_url=server.url).chroma_url == server.url
    with pytest.raises(ValueError, match="not both"):
        ServerSettings(chroma_url=server.url, db=str(tmp_path))


def test_the_server_address_comes_from_a_url_or_an_http_client(server, tmp_path) -> None:
    import chromadb

    from mmrag.ray import ChromaServer

    assert ChromaServer.from_url("https://db.example:9000") == ChromaServer("db.example", 9000, ssl=True)
    assert ChromaServer.from_url("http://10.0.0.5").port == 8000
    assert ChromaServer.of(server.client()).url == server.url
    with pytest.raises(mmrag.InvalidInputError, match="http://HOST:PORT"):
        ChromaServer.from_url("127.0.0.1:8000")
    with pytest.raises(mmrag.InvalidInputError, match="not an embedded client"):
        ChromaServer.of(chromadb.PersistentClient(path=str(tmp_path / "db")))
    with pytest.raises(ConnectionError, match=r"cannot reach the Chroma server at http://127\.0\.0\.1:1"):
        ChromaServer("127.0.0.1", 1).connect()


def test_one_cpu_actor_without_gpus_and_checked_counts(ray_session) -> None:
    from mmrag.ray import ActorPlan

    plan = ActorPlan()  # this Ray has no GPUs: one CPU actor
    assert (plan.concurrency, plan.num_gpus) == (1, 0.0) and "num_gpus" not in plan.map_arguments()
    assert ActorPlan(concurrency=3, num_gpus=0.5).map_arguments()["num_gpus"] == 0.5
    for bad in ({"concurrency": 0}, {"concurrency": True}, {"num_gpus": -1}):
        with pytest.raises(mmrag.InvalidInputError):
            ActorPlan(**bad)
