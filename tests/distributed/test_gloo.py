"""Distributed training and extraction on the CPU: 2 gloo processes against one process.

Each test spawns its processes (a few seconds each); the checks themselves live in
``asl_core.testkit.distributed`` so that the spawned processes can import them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from asl_core import distributed
from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import DatasetSpec, build_splits, get_spec
from asl_core.engine.cache import DiskCache, _features_key, cached_features
from asl_core.engine.features import extract_features
from asl_core.errors import UserError
from asl_core.testkit.images import write_folder
from asl_core.testkit.distributed import free_port, run_checks, run_gloo
from asl_core.library import validate_file
from asl_core.training import TrainConfig, train
from asl_core.engine.options import InferenceOptions

REPO = Path(__file__).resolve().parents[2]
WORLD = 2


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory):
    """One set of 2 gloo processes runs every check (starting them costs more than the checks);
    each test below reads its own check's outcome."""
    tmp = tmp_path_factory.mktemp("gloo")
    spec = get_spec("digits-hard", samples_per_class=12, imbalance=3.0, val_per_class=5, test_per_class=9)
    splits = build_splits(spec)
    result = train(TrainConfig(epochs=1, seed=0), spec, splits=splits, progress=False, name="shardme")
    path = save_checkpoint(result.model, result.meta, tmp / "shardme")
    # a model of an image folder: its sharded extraction decodes files on each rank
    folder = write_folder(tmp / "images", ["a", "b", "c"], per_class=12, size=16)
    folder_spec = DatasetSpec(source="folder", root=str(folder), image_size=16, val_per_class=2, test_per_class=5)
    folder_model = train(TrainConfig(epochs=1, seed=0, device="cpu", batch_size=8), folder_spec, progress=False, name="f")
    folder_path = save_checkpoint(folder_model.model, folder_model.meta, tmp / "folder-model")
    (tmp / "decoded").mkdir()
    checks = [("check_global_batch_asloss", ()), ("check_ddp_weights", ()),
              ("check_sharded_extraction", (path, tmp / "cache")),
              ("check_sharded_folder_extraction", (folder_path, tmp / "folder-cache", tmp / "decoded"))]
    error = None
    # what a Streamlit page run earlier in this process leaves behind (the app tests run first): its
    # script installed as __main__, which a spawned rank would run again (CI failed on that)
    page = tmp / "page.py"
    page.write_text(f"open({str(tmp / 'page-ran')!r}, 'w').write('ran')\nraise SystemExit(1)\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(page)
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        run_gloo(run_checks, WORLD, tmp, checks)
    except Exception as exc:  # noqa: BLE001 - reported by the test whose check failed
        error = exc
    finally:
        sys.modules["__main__"] = saved
    return {"dir": tmp, "error": error, "spec": spec, "splits": splits, "checkpoint": path, "cache": tmp / "cache",
            "folder_spec": folder_spec, "folder_checkpoint": folder_path}


def passed(run: dict, check: str) -> None:
    failed = run["dir"] / f"{check}.failed"
    if failed.exists():
        pytest.fail(failed.read_text(), pytrace=False)
    if not (run["dir"] / f"{check}.ok").exists():
        pytest.fail(f"{check} did not run: {run['error']!r}", pytrace=False)


def test_ranks_spawned_after_a_streamlit_page_do_not_run_it(gloo_run):
    assert not (gloo_run["dir"] / "page-ran").exists()
    assert gloo_run["error"] is None, gloo_run["error"]


def test_global_batch_asloss_equals_one_process_loss_and_gradients(gloo_run):
    passed(gloo_run, "check_global_batch_asloss")


def test_ddp_reaches_the_single_process_weights(gloo_run):
    passed(gloo_run, "check_ddp_weights")


def test_sharded_extraction_equals_one_process_and_is_read_like_any_entry(gloo_run):
    passed(gloo_run, "check_sharded_extraction")
    spec, splits, cache_dir = gloo_run["spec"], gloo_run["splits"], gloo_run["cache"]
    ckpt = load_checkpoint(gloo_run["checkpoint"])
    layers = ["embedding", "block3"]
    assert not list((cache_dir / "features-shards").rglob("*.npz")), "the shards are removed after the merge"
    cache = DiskCache(cache_dir)
    merged = cached_features(cache, ckpt, spec, "test", layers)  # what the app calls
    assert (cache.hits, cache.misses) == (1, 0)
    single = extract_features(ckpt, splits.test, layers, InferenceOptions(device="cpu", batch_size=64),
                              split_name="test")
    assert len(merged) == len(splits.test) == 90
    for name in layers:
        np.testing.assert_allclose(merged.layers[name], single.layers[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merged.logits, single.logits, rtol=1e-5, atol=1e-6)
    for field in ("index", "labels", "preds"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(single, field))
    assert merged.device == "cpu x2"
    # the merged entry sits under the single-process key, not a new one
    key = _features_key(ckpt, spec, "test", layers, None)
    assert (cache_dir / "features" / key[:2] / f"{key}.json").exists()


def test_sharded_folder_extraction_reads_only_each_ranks_files_and_equals_one_process(gloo_run):
    passed(gloo_run, "check_sharded_folder_extraction")
    spec, tmp = gloo_run["folder_spec"], gloo_run["dir"]
    test = build_splits(spec).test
    decoded = [[int(v) for v in (tmp / "decoded" / f"decoded-{r}.txt").read_text().split()] for r in range(WORLD)]
    for rank in range(WORLD):
        own = test.index[distributed.shard_slice(len(test), distributed.DistContext(rank=rank, world_size=WORLD))]
        assert sorted(decoded[rank]) == sorted(own.tolist()), f"rank {rank} decoded files outside its shard"
    ckpt = load_checkpoint(gloo_run["folder_checkpoint"])
    cache = DiskCache(tmp / "folder-cache")
    merged = cached_features(cache, ckpt, spec, "test", ["embedding"])
    assert (cache.hits, cache.misses) == (1, 0)
    single = extract_features(ckpt, test, ["embedding"], InferenceOptions(device="cpu", batch_size=4, workers=0),
                              split_name="test")
    np.testing.assert_array_equal(merged.index, test.index.numpy())  # same order as one process
    np.testing.assert_allclose(merged.layers["embedding"], single.layers["embedding"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(merged.logits, single.logits, rtol=1e-5, atol=1e-5)


def test_torchrun_trains_a_digits_model_that_loads(tmp_path):
    """The real launcher: ``torchrun --nproc_per_node=2 -m asl_core train`` on the CPU (gloo)."""
    out = tmp_path / "ddp-digits"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ASL_LENS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}",
           "-m", "asl_core", "train", "--dataset", "digits-hard", "--epochs", "1", "--method", "asloss",
           "--sampler", "balanced", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("saved ") == 1, "rank 0 alone writes and reports"
    assert "trained by 2 processes, gloo" in proc.stdout
    ckpt = load_checkpoint(out.with_suffix(".safetensors"))
    validate_file(out.with_suffix(".safetensors"))  # what the app's upload form runs
    assert ckpt.meta.method == "asloss" and ckpt.meta.hyperparams["distributed"] == {
        "world_size": 2, "backend": "gloo", "per_process_batch": 32}
    assert len(ckpt.meta.history) == 1 and ckpt.meta.metrics["test"]["accuracy"] > 0
    assert sum(ckpt.meta.history[0]["same_class_pairs"]) > 0  # counted on the global batch
    assert list(tmp_path.glob("*.safetensors")) == [out.with_suffix(".safetensors")], "no stray files"


# --------------------------------------------------------------------------- no processes needed


def test_shards_cover_the_batch_in_order():
    for n in (1, 7, 64, 65):
        for world in (1, 2, 3, 8):
            sizes = distributed.shard_sizes(n, world)
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
            slices = [distributed.shard_slice(n, distributed.DistContext(rank=r, world_size=world))
                      for r in range(world)]
            assert [i for s in slices for i in range(n)[s]] == list(range(n))
            assert [len(range(n)[s]) for s in slices] == [len(c) for c in torch.tensor_split(torch.arange(n), world)]


def test_single_process_context_from_a_plain_environment():
    assert distributed.world_from_env({}) is distributed.SINGLE
    assert distributed.world_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is distributed.SINGLE
    ctx = distributed.world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.active, ctx.is_main) == (3, 4, 1, True, False)
    h = torch.randn(5, 3, requires_grad=True)
    assert distributed.gather_rows(h, [5], distributed.SINGLE) is h


@pytest.mark.parametrize("env,message", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "does not fit WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2"}, "does not fit WORLD_SIZE=2"),
])
def test_a_broken_torchrun_environment_is_a_clear_error(env, message):
    with pytest.raises(UserError, match=message):
        distributed.world_from_env(env)


def test_threads_are_shared_between_the_processes_of_a_node(monkeypatch):
    monkeypatch.delenv("ASL_LENS_THREADS", raising=False)
    ctx = distributed.DistContext(rank=0, world_size=4)
    assert distributed.threads_per_process(distributed.SINGLE) is None
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert distributed.threads_per_process(ctx, {"LOCAL_WORLD_SIZE": "4"}) == 2  # 16 cores / 2 (cli share) / 4
    assert distributed.threads_per_process(ctx, {"LOCAL_WORLD_SIZE": "32"}) == 1
    monkeypatch.setenv("ASL_LENS_THREADS", "3")
    assert distributed.threads_per_process(ctx, {"LOCAL_WORLD_SIZE": "4"}) is None  # the setting wins
