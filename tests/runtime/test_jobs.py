"""The jobs of ``runtime.jobs``: each is named to the worker by its function, and the parent
imports them (to start jobs) without loading Keras."""

import subprocess
import sys

import numpy as np
import pytest

from napari_unet.core.config import TrainConfig
from napari_unet.runtime import worker
from napari_unet.runtime.jobs import export, predict, rank, train, warm_up
from napari_unet.runtime.warm import WARM_UP_TARGET


@pytest.mark.parametrize("job", [train.train_job, predict.predict_job, export.export_job, rank.rank_job,
                                 warm_up.warm_up_job])
def test_a_job_is_named_by_its_function_and_found_again_by_that_name(job):
    assert worker.resolve_target(worker.target_of(job)) is job


def test_the_warm_up_target_names_the_warm_up_job():
    assert WARM_UP_TARGET == "napari_unet.runtime.jobs.warm_up:warm_up_job"


def test_start_training_takes_all_but_the_arrays_by_keyword(tmp_path):
    image, labels = np.zeros((2, 32, 32)), np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(TypeError):
        train.start_training(image, labels, None, TrainConfig(), tmp_path / "model")
    job = train.start_training(image, labels, model_cfg=None, train_cfg=TrainConfig(), out_dir=tmp_path / "model")
    assert job.target == "napari_unet.runtime.jobs.train:train_job" and "_env" not in job.params
    assert job.env["KERAS_BACKEND"]
    job.close()


def test_importing_the_jobs_loads_no_keras():
    code = ("import sys; import napari_unet.runtime.jobs.train, napari_unet.runtime.jobs.predict, "
            "napari_unet.runtime.jobs.rank, napari_unet.runtime.jobs.export; "
            "print(sorted({'keras', 'tensorflow'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
