"""Prediction on a dask.distributed LocalCluster (runtime.cluster): the same labels as one
process, the model loaded once per worker, objects joined across blocks, one-line failures.

One module-scoped cluster of 2 worker processes serves most tests (starting one takes seconds);
this process never imports Keras: the model is trained in a spawned worker."""

import os
import re
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")

from napari_unet.cli.main import main  # noqa: E402
from napari_unet.cli.progress import predict_with_progress  # noqa: E402
from napari_unet.core.config import ModelConfig, PredictConfig, TrainConfig  # noqa: E402
from napari_unet.io import omezarr  # noqa: E402
from napari_unet.runtime import cluster, cluster_tasks  # noqa: E402
from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.runtime.shm import LazyFile  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder with vol.tif and a tiny model, volume): 12 slices, a ball crossing block faces
    and a rod through every slice."""
    folder = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:12, 0:48, 0:48]
    truth = (((y - 20) ** 2 + (x - 24) ** 2 + 2 * (z - 6) ** 2) < 120) | (((y - 38) ** 2 + (x - 10) ** 2) < 30)
    image = (truth * 120 + 40 + rng.normal(0, 10, truth.shape)).clip(0, 255).astype(np.uint8)
    tifffile.imwrite(folder / "vol.tif", image, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})
    labels = np.zeros(truth.shape, np.uint8)
    labels[[2, 9]] = truth[[2, 9]]
    job = start_training(image, labels, model_cfg=ModelConfig(n_filters=4, depth=2),
                         train_cfg=TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, patch_size=32),
                         out_dir=str(folder / "model"))
    with job:
        job.start()
        assert job.wait(timeout=300)[-1].kind == "done"
    return folder, image


@pytest.fixture(scope="module")
def client():
    with cluster.connect(workers=2) as c:
        yield c


OBJECTS = dict(output="instances", block_slices=4, halo=2, min_object_size=5)


def _single(folder, cfg, image="vol.tif"):
    _, labels, _, _ = predict_with_progress(LazyFile(str(folder / image)), folder / "model", cfg)
    return labels


def _on_cluster(folder, client, cfg, name, image="vol.tif", **kwargs):
    out = folder / name
    summary = cluster.predict_distributed(folder / image, folder / "model", out=out, cfg=cfg, client=client, **kwargs)
    return np.asarray(omezarr.open_lazy(out)[0]), summary


@pytest.mark.parametrize("settings", [dict(block_slices=4), OBJECTS], ids=["classes", "objects"])
def test_two_workers_give_the_single_process_labels(tiny, client, settings):
    folder, _ = tiny
    cfg = PredictConfig(**settings)
    labels, summary = _on_cluster(folder, client, cfg, f"{cfg.output}.ome.zarr")
    assert summary["n_blocks"] == 3 and summary["n_workers"] == 2
    single = _single(folder, cfg)
    assert labels.max() > 0
    np.testing.assert_array_equal(labels, single)  # ids too: objects are numbered as one process numbers them


def test_slices_too_large_for_whole_slabs_give_the_single_process_objects(tiny, client):
    """528 x 528 slices: one process labels the 3-D objects of a slab in Y/X tiles; the cluster
    labels the same tiles apart and joins them into the same objects, ids included."""
    folder, image = tiny
    tifffile.imwrite(folder / "large.tif", np.tile(image, (1, 11, 11)))
    cfg = PredictConfig(**OBJECTS)
    labels, summary = _on_cluster(folder, client, cfg, "tiled.ome.zarr", image="large.tif")
    assert summary["n_tiles"] > 1
    single = _single(folder, cfg, image="large.tif")
    assert len(np.unique(single)) > 100
    np.testing.assert_array_equal(labels, single)


@pytest.mark.parametrize("probabilities", [False, True], ids=["classes", "probabilities"])
def test_y_x_blocks_give_the_single_process_labels(tiny, client, probabilities):
    """Slices cut into 20 x 20 regions, each predicted in the single process's model tiles
    (24 px, 4 px overlap) that reach into it: the same classes and probabilities."""
    folder, _ = tiny
    cfg = PredictConfig(block_slices=6, tile_size=24, tile_overlap=4)
    prob = folder / "regions-prob.zarr" if probabilities else None
    labels, summary = _on_cluster(folder, client, cfg, f"regions-{probabilities}.zarr", block_yx=20, prob=prob)
    assert summary["n_regions"] == 9 and summary["n_blocks"] == 2
    _, single, single_prob, _ = predict_with_progress(LazyFile(str(folder / "vol.tif")), folder / "model",
                                                      cfg.replace(return_probabilities=probabilities))
    assert 0 < labels.mean() < 1
    np.testing.assert_array_equal(labels, single)
    if probabilities:
        np.testing.assert_allclose(np.asarray(omezarr.open_lazy(prob)[0]), single_prob, atol=1e-6)


def test_y_x_blocks_are_refused_for_objects(tiny, client):
    folder, _ = tiny
    with pytest.raises(ValueError, match="objects need whole slices"):
        _on_cluster(folder, client, PredictConfig(**OBJECTS), "refused.zarr", block_yx=20)
    assert not (folder / "refused.zarr").exists()


def test_the_model_is_loaded_once_per_worker(tiny, client):
    folder, _ = tiny
    for name in ("a.zarr", "b.zarr"):  # 6 blocks on 2 workers: at least one worker runs several
        _on_cluster(folder, client, PredictConfig(block_slices=4), name)
    loads = client.run(cluster_tasks.loaded_models)
    assert len(loads) == 2 and all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1, loads


def test_an_object_crossing_a_block_face_keeps_one_id(tiny, client):
    folder, _ = tiny
    labels, _ = _on_cluster(folder, client, PredictConfig(**OBJECTS), "faces.zarr")
    rod = labels[:, 38, 10]  # the rod runs through all 12 slices, so through both block faces (4 and 8)
    assert rod.min() > 0 and rod[3] == rod[4], rod  # one id across the face at slice 4
    np.testing.assert_array_equal(rod, _single(folder, PredictConfig(**OBJECTS))[:, 38, 10])
    # Without the join each block would number the rod itself.
    separate, _ = _on_cluster(folder, client, PredictConfig(**dict(OBJECTS, halo=0, objects="2d")), "2d.zarr")
    assert len(set(separate[:, 38, 10])) == 12


def test_a_zarr_of_one_chunk_is_rechunked_and_said_once(tiny, client, monkeypatch):
    import zarr

    folder, image = tiny
    one_chunk = zarr.create_array(str(folder / "one_chunk.zarr"), shape=image.shape, chunks=image.shape,
                                  dtype=image.dtype)
    one_chunk[:] = image
    monkeypatch.setattr(cluster, "RECHUNK_BYTES", 0)  # the tiny volume stands for one too big for memory
    said = []
    out = folder / "from_one_chunk.zarr"
    cluster.predict_distributed(folder / "one_chunk.zarr", folder / "model", out=out, cfg=PredictConfig(block_slices=4),
                                client=client, on_message=said.append)
    assert len([s for s in said if "rechunking" in s]) == 1, said
    np.testing.assert_array_equal(np.asarray(omezarr.open_lazy(out)[0]), _single(folder, PredictConfig()))
    assert not list(folder.glob("*.partial.zarr"))


@pytest.mark.skipif(not hasattr(os, "getpgid"), reason="process groups")
def test_local_workers_leave_the_terminals_process_group(client):
    """Ctrl-C in a terminal reaches its whole process group; the command stops gracefully, and a
    worker that died of it would lose its running block."""
    groups = client.run(lambda: (os.getpid(), os.getpgid(0)))
    assert all(pid == group != os.getpgid(0) for pid, group in groups.values()), groups


def test_a_failing_block_is_one_line_naming_its_slices(tiny, client):
    folder, _ = tiny
    broken = folder / "broken_model"
    shutil.copytree(folder / "model", broken)
    (broken / "model.weights.h5").write_bytes(b"not HDF5")  # bundle.json reads fine, loading fails
    with pytest.raises(cluster.ClusterError) as info:
        cluster.predict_distributed(folder / "vol.tif", broken, out=folder / "never.zarr",
                                    cfg=PredictConfig(block_slices=4), client=client, retries=0)
    message = str(info.value)
    assert re.match(r"The block of slices \d+-\d+ failed after 1 tries: \w+", message) and "\n" not in message
    assert not (folder / "never.zarr").exists() and not list(folder.glob("never*"))


def test_a_worker_without_a_package_is_named(client, monkeypatch):
    monkeypatch.setattr(cluster, "WORKER_MODULES", cluster.WORKER_MODULES + ("napari_unet_missing_dependency",))
    with pytest.raises(cluster.ClusterError, match="cannot import napari_unet_missing_dependency .*install"):
        cluster.check_workers(client)


def test_an_existing_output_is_never_replaced(tiny, client):
    folder, _ = tiny
    (folder / "taken.ome.zarr").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        cluster.predict_distributed(folder / "vol.tif", folder / "model", out=folder / "taken.ome.zarr",
                                    cfg=PredictConfig(), client=client)
    assert list((folder / "taken.ome.zarr").iterdir()) == []


def test_an_unreachable_scheduler_fails_fast_in_one_line(tiny, capsys):
    folder, _ = tiny
    status = main(["predict", "--model", str(folder / "model"), "--image", str(folder / "vol.tif"),
                   "--out", str(folder / "x.zarr"), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "tcp://127.0.0.1:9" in err and "check the address" in err
    assert f"within {cluster.CONNECT_TIMEOUT_S} s" in err  # the bounded connect gave up: no waiting on retries
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_workers_zero_is_refused_by_the_options(tiny, capsys):
    folder, _ = tiny
    assert main(["predict", "--model", str(folder / "model"), "--image", str(folder / "vol.tif"),
                 "--out", str(folder / "y.zarr"), "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "napari-unet predict: error: workers must be between 1 and 1024, got 0"


def test_cli_on_a_running_scheduler_gives_the_single_process_labels_and_leaves_it_running(tiny, client, capsys):
    """--scheduler: the module's cluster stands for one started elsewhere; the command closes its
    own connection only, never the cluster or its workers."""
    folder, _ = tiny
    pids = client.run(os.getpid)
    out = folder / "on_scheduler.zarr"
    assert main(["predict", "--model", str(folder / "model"), "--image", str(folder / "vol.tif"), "--out", str(out),
                 "--scheduler", client.scheduler.address, "--block-slices", "4"]) == 0
    assert "3 block(s) of slices on 2 worker(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(omezarr.open_lazy(out)[0]), _single(folder, PredictConfig(block_slices=4)))
    assert client.run(os.getpid) == pids  # the same worker processes, still there
    assert client.submit(sum, [1, 2]).result() == 3  # and the scheduler still takes work


@pytest.mark.skipif(sys.platform == "win32", reason="local cluster start-up")
def test_cli_workers_write_an_ome_zarr_with_the_input_scale(tiny, capsys):
    folder, _ = tiny
    out = folder / "cli.ome.zarr"
    assert main(["predict", "--model", str(folder / "model"), "--image", str(folder / "vol.tif"), "--out", str(out),
                 "--workers", "2", "--block-slices", "4"]) == 0
    assert "3 block(s) of slices on 2 worker(s)" in capsys.readouterr().out
    labels, meta = omezarr.open_lazy(out)
    assert meta.axes == "ZYX" and meta.scale == (3.0, 0.5, 0.5) and meta.labels_marked
    assert meta.units == ("micrometer",) * 3
    np.testing.assert_array_equal(np.asarray(labels), _single(folder, PredictConfig(block_slices=4)))


def test_probabilities_on_the_cluster_are_those_of_one_process(tiny, client):
    folder, _ = tiny
    cfg = PredictConfig(block_slices=4, return_probabilities=True)
    cluster.predict_distributed(folder / "vol.tif", folder / "model", out=folder / "l.zarr", cfg=cfg, client=client,
                                prob=folder / "p.ome.zarr")
    _, labels, probs, _ = predict_with_progress(LazyFile(str(folder / "vol.tif")), folder / "model", cfg)
    np.testing.assert_allclose(np.asarray(omezarr.open_lazy(folder / "p.ome.zarr")[0]), probs, atol=1e-6)
    assert not omezarr.open_lazy(folder / "p.ome.zarr")[1].labels_marked


@pytest.fixture
def slow_blocks(client):
    """Each block on the module's workers takes half a second longer: the tiny blocks take
    milliseconds, so a signal after the first one would otherwise find every block finished."""
    def slow(seconds):
        import time

        from napari_unet.runtime import cluster_tasks as tasks

        real = getattr(tasks.run_block, "unslowed", tasks.run_block)

        def run_block(spec, block, **region):
            time.sleep(seconds)
            return real(spec, block, **region)

        run_block.unslowed = real
        tasks.run_block = run_block if seconds else real

    client.run(slow, 0.5)
    yield
    client.run(slow, 0)


def _signalled_after_first_block(monkeypatch, signum):
    """The command's cluster prediction gets ``signum``, as from the terminal, once its first block is done."""
    real = cluster.predict_distributed

    def predict(*args, on_block, **kwargs):
        def on_block_then_signal(done, total):
            on_block(done, total)
            if done == 1:
                os.kill(os.getpid(), signum)

        return real(*args, on_block=on_block_then_signal, **kwargs)

    monkeypatch.setattr(cluster, "predict_distributed", predict)


def _predict_cli(folder, client, out, *options):
    return main(["predict", "--model", str(folder / "model"), "--image", str(folder / "vol.tif"), "--out", str(out),
                 "--scheduler", client.scheduler.address, "--block-slices", "2", *options])


def test_a_signal_keeps_the_finished_blocks_slices_as_one_process_has_them(tiny, client, slow_blocks, capsys,
                                                                          monkeypatch):
    """Ctrl-C: no block starts any more, the running ones finish; their slices are kept (the others 0)
    under the incomplete names, as one process keeps its finished slices."""
    folder, _ = tiny
    _signalled_after_first_block(monkeypatch, signal.SIGINT)
    out, prob = folder / "stopped.ome.zarr", folder / "stopped_prob.zarr"
    assert _predict_cli(folder, client, out, "--prob", str(prob)) == 128 + signal.SIGINT
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "napari-unet predict: stopped by Ctrl-C."
    line = [s for s in captured.out.splitlines() if s.startswith("Cancelled after")]
    assert len(line) == 1 and "(the other slices are 0)" in line[0] and "not written" in line[0], captured.out
    kept_labels, kept_probs = folder / "stopped.ome.incomplete.zarr", folder / "stopped_prob.incomplete.zarr"
    assert str(kept_labels) in line[0] and str(kept_probs) in line[0]
    assert not out.exists() and not prob.exists() and not list(folder.glob("stopped*.partial.zarr"))

    ranges = re.search(r"the finished slices \(([\d, -]+)\)", line[0]).group(1)
    done = np.zeros(12, bool)
    for part in ranges.split(", "):
        first, _, last = part.partition("-")
        done[int(first): int(last or first) + 1] = True
    assert 0 < done.sum() < 12 and f"after {done.sum()} of 12 slices" in line[0]
    cfg = PredictConfig(block_slices=2, return_probabilities=True)
    _, single, single_probs, _ = predict_with_progress(LazyFile(str(folder / "vol.tif")), folder / "model", cfg)
    labels, probs = np.asarray(omezarr.open_lazy(kept_labels)[0]), np.asarray(omezarr.open_lazy(kept_probs)[0])
    np.testing.assert_array_equal(labels[done], single[done])
    np.testing.assert_allclose(probs[done], single_probs[done], atol=1e-6)
    assert labels[~done].max() == 0 and probs[~done].max() == 0
    assert len(client.run(os.getpid)) == 2  # the cluster the command did not start is left running


def test_a_signal_during_an_objects_run_keeps_nothing(tiny, client, slow_blocks, capsys, monkeypatch):
    folder, _ = tiny
    _signalled_after_first_block(monkeypatch, signal.SIGTERM)
    out = folder / "stopped_objects.zarr"
    assert _predict_cli(folder, client, out, "--output", "instances", "--halo", "2") == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "napari-unet predict: stopped by SIGTERM."
    line = [s for s in captured.out.splitlines() if s.startswith("Cancelled")]
    assert len(line) == 1 and "objects need every block joined, so nothing was written" in line[0], captured.out
    assert f"the temporary folder {out}.partial.zarr was removed" in line[0]
    assert not out.exists() and not (folder / "stopped_objects.zarr.partial.zarr").exists()


def test_a_signal_after_every_block_started_gives_the_whole_output(tiny, client, monkeypatch):
    """Stopping lets running blocks finish; when no block was left out, the output is whole and
    written under the asked name, not as an incomplete one."""
    folder, _ = tiny
    run_blocks = cluster._run_blocks

    def signal_once_all_ran(client, spec, plan, retries, on_block, stop_file, on_message):
        records, futures, _ = run_blocks(client, spec, plan, retries, on_block, stop_file, on_message)
        Path(stop_file).touch()  # as the signal leaves it (cluster_stop.StopOnSignal)
        return records, futures, signal.SIGINT

    monkeypatch.setattr(cluster, "_run_blocks", signal_once_all_ran)
    cfg = PredictConfig(block_slices=4)
    labels, summary = _on_cluster(folder, client, cfg, "all-ran.ome.zarr", keep=lambda path: folder / "no.zarr")
    assert summary["stopped"] is None and not (folder / "no.zarr").exists()
    assert not (folder / "all-ran.ome.zarr" / cluster.STOP_FILE).exists()  # the signal's mark is not output
    np.testing.assert_array_equal(labels, _single(folder, cfg))


def test_the_line_of_a_stopped_run_names_finished_y_x_regions_of_a_block():
    from types import SimpleNamespace

    from napari_unet.cli.cluster import _kept_of_cluster

    finals = {Path("o.zarr"): Path("o.zarr.partial.zarr")}
    summary = {"n_regions": 4, "n_slices": 12, "kept": {Path("o.zarr"): Path("o.incomplete.zarr")},
               "done": [((0, 2), r) for r in range(4)] + [((2, 4), 0)] + [((4, 6), r) for r in range(4)]
               + [((8, 10), 3)]}
    assert _kept_of_cluster(summary, finals, SimpleNamespace(output="labels")) == (
        "Cancelled after 4 of 12 slices: the finished parts (slices 0-1, 4-5; slices 2-3 in 1 of their 4 Y/X "
        "regions; slices 8-9 in 1 of their 4 Y/X regions) are in o.incomplete.zarr (the rest is 0); o.zarr was not "
        "written.")


def test_a_worker_killed_mid_run_leaves_a_correct_output(tiny, client):
    """Kept last: it kills a worker of the shared cluster (its nanny starts a new one). dask runs
    the lost blocks again; each rewrites its whole region, so the output is still exact."""
    import os
    import signal

    folder, _ = tiny
    pids = list(client.run(os.getpid).values())

    def kill_one(done, total):
        if done == 1:
            os.kill(pids[0], signal.SIGKILL)

    cfg = PredictConfig(**dict(OBJECTS, block_slices=2, halo=2))
    labels, summary = _on_cluster(folder, client, cfg, "after_kill.ome.zarr", on_block=kill_one)
    assert summary["n_blocks"] == 6 and pids[0] not in client.run(os.getpid).values()
    np.testing.assert_array_equal(labels, _single(folder, cfg))


def test_a_failing_block_in_the_cli_names_the_workers_log(tiny, capsys):
    folder, _ = tiny
    broken = folder / "broken_for_cli"
    shutil.copytree(folder / "model", broken)
    (broken / "model.weights.h5").write_bytes(b"not HDF5")
    status = main(["predict", "--model", str(broken), "--image", str(folder / "vol.tif"),
                   "--out", str(folder / "never_cli.zarr"), "--workers", "1", "--retries", "0"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    log = Path(err.rsplit("Workers' output: ", 1)[1].split()[0])
    assert "failed after 1 tries" in err and log.exists()
    log.unlink()
