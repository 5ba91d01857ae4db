"""Every GPU check in one call, one Markdown report (bench/gpu_check.sh installs, then runs this).

    python bench/gpu_check.py --report docs/GPU_CHECK.md

1. the CUDA tests (tests/gpu, marker ``cuda``): autocast bf16/fp16 against fp32, channels_last,
   pinned memory, a real out-of-memory fallback, training on the GPU, cuML when installed;
2. a DDP smoke run: ``torchrun --nproc_per_node=N -m asl_core train`` (N = 2 GPUs when there are 2,
   else 1) whose checkpoint must load, and a sharded ``extract`` equal to one process;
3. cuML against the CPU: UMAP and t-SNE seconds for growing point counts (when cuML is installed);
4. throughput: ResNet-18 at 224 px in bf16, extraction and a training step with and without
   ASLoss (bench/gpu_bench.py), on 1 GPU and, with 2 or more, under DDP.

Exits 2 with a message and writes nothing when there is no GPU; 1 when a check failed.
Each step has a time limit, so the whole stays inside 10 minutes after the install.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def run(cmd: list[str], timeout: int, env: dict | None = None) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out = 124, f"timed out after {timeout} s\n{(exc.stdout or '')[-2000:]}"
    return code, out, time.perf_counter() - start


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def cuda_tests(work: Path) -> tuple[bool, list[str]]:
    junit = work / "junit.xml"
    code, out, seconds = run([PY, "-m", "pytest", "-q", "-rA", "-m", "cuda", "tests/gpu", f"--junitxml={junit}",
                              "-p", "no:cacheprovider"], timeout=240)
    rows = ["| test | outcome | seconds | message |", "|---|---|---|---|"]
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                    message = (node.get("message") or "").splitlines()[0][:160] if node.get("message") else ""
            rows.append(f"| `{case.get('name')}` | {outcome} | {float(case.get('time', 0)):.1f} | {message} |")
    ok = code == 0
    section = [f"## 1. CUDA tests (`pytest -m cuda tests/gpu`): {'passed' if ok else 'FAILED'} in {seconds:.0f} s", "",
               *rows, ""]
    if not ok:
        section += ["```", tail(out, 40), "```", ""]
    return ok, section


def ddp_smoke(work: Path, gpus: int) -> tuple[bool, list[str]]:
    n = 2 if gpus >= 2 else 1
    out_path = work / "ddp-digits"
    launch = [PY, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master-port=29617", "-m", "asl_core"]
    code, out, seconds = run(launch + ["train", "--dataset", "digits-hard", "--epochs", "3", "--method", "asloss",
                                       "--sampler", "balanced", "--device", "cuda", "--out", str(out_path), "--quiet"],
                             timeout=180, env={"ASL_LENS_CACHE": str(work / "cache")})
    lines = [f"## 2. DDP smoke run on {n} GPU(s)", "", f"`torchrun --nproc_per_node={n} -m asl_core train --dataset "
             f"digits-hard --epochs 3 --method asloss --sampler balanced --device cuda`: exit {code}, {seconds:.0f} s", ""]
    ok = code == 0
    if ok:
        from asl_core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(out_path.with_suffix(".safetensors"))
        dist_info = ckpt.meta.hyperparams.get("distributed", {"world_size": 1})
        test = ckpt.meta.metrics["test"]
        lines += [f"- checkpoint loads: {ckpt.meta.arch}, method {ckpt.meta.method}, processes {dist_info}, "
                  f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}"]
        cache = work / "cache-extract"
        code, out2, seconds = run(launch + ["extract", str(out_path.with_suffix(".safetensors")), "--split", "test",
                                            "--layers", "embedding,block3", "--device", "cuda",
                                            "--cache-dir", str(cache)], timeout=120)
        ok = code == 0
        if ok:
            import numpy as np

            from asl_core.data import DatasetSpec, build_splits
            from asl_core.engine.cache import DiskCache, cached_features
            from asl_core.engine.features import extract_features
            from asl_core.engine.options import InferenceOptions

            disk = DiskCache(cache)
            merged = cached_features(disk, ckpt, DatasetSpec.from_dict(ckpt.meta.dataset), "test", ["embedding", "block3"])
            single = extract_features(ckpt, build_splits(DatasetSpec.from_dict(ckpt.meta.dataset)).test,
                                      ["embedding", "block3"], InferenceOptions(device="cuda"))
            same = disk.hits == 1 and all(np.allclose(merged.layers[k], single.layers[k], rtol=1e-4, atol=1e-5)
                                          for k in single.layers) and np.array_equal(merged.index, single.index)
            ok = bool(same)
            lines += [f"- sharded extraction over {n} process(es) ({seconds:.0f} s): merged entry read from the cache, "
                      f"{'equal to' if same else 'DIFFERENT from'} one process ({len(merged)} samples, device {merged.device})"]
        else:
            lines += ["- sharded extraction FAILED:", "```", tail(out2), "```"]
    else:
        lines += ["```", tail(out, 40), "```"]
    return ok, lines + [""]


def cuml_scaling(work: Path) -> tuple[bool, list[str]]:
    script = r"""
import json, os, time
import numpy as np
from asl_core.engine.projection import ProjectionConfig, project
plan = [("umap", 20000, "off"), ("umap", 20000, "auto"), ("umap", 100000, "auto"), ("umap", 400000, "auto"),
        ("tsne", 20000, "auto"), ("tsne", 100000, "auto")]
for method, n, gpu in plan:
    os.environ["ASL_LENS_GPU_PROJECTION"] = gpu
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    X = (rng.normal(size=(n, 64)) + 3 * labels[:, None]).astype(np.float32)
    start = time.perf_counter()
    p = project(X, labels, ProjectionConfig(method=method, max_points=n, trust_points=2000))
    print(json.dumps({"method": method, "n": n, "backend": p.backend, "seconds": round(time.perf_counter() - start, 1),
                      "trust": round(p.trustworthiness, 3)}), flush=True)
"""
    code, out, seconds = run([PY, "-c", script], timeout=150)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    lines = ["## 3. cuML projections (64-D, 10 classes; seconds include standardising, PCA to 50 and "
             "trustworthiness on 2,000 points)", "", "| method | points | backend | seconds | trustworthiness |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['n']:,} | {r['backend']} | {r['seconds']} | {r['trust']} |" for r in rows]
    if code != 0:
        lines += ["", f"stopped (exit {code}) after {seconds:.0f} s:", "```", tail(out, 15), "```"]
    gpu_rows = [r for r in rows if r["backend"] == "cuml"]
    return code == 0 and len(gpu_rows) == len(rows) - 1, lines + [""]


def throughput(work: Path, gpus: int) -> tuple[bool, list[str]]:
    one = work / "bench1.json"
    code, out, _ = run([PY, "bench/gpu_bench.py", "--json", str(one)], timeout=180)
    lines = ["## 4. Throughput: ResNet-18, 224 px (bench/gpu_bench.py)", ""]
    ok = code == 0
    if ok:
        r = json.loads(one.read_text())
        e = r["extraction_images_per_s"]
        lines += [f"GPU: {r['gpu']}; torch {r['torch']}, CUDA {r['cuda']}", "",
                  f"- extraction ({r['n']} images, batch {r['batch']}, from host memory): fp32 {e['fp32']:,} images/s, "
                  f"bf16 + channels_last {e['bf16+channels_last']:,} images/s",
                  f"- training step, batch {r['global_batch']}, {r['precision']}:", "",
                  "| objective | images/s | time vs CE |", "|---|---|---|"]
        lines += [f"| {k} | {v:,} | {r['ratio_to_CE'][k]} |" for k, v in r["train_images_per_s"].items()]
    else:
        lines += ["```", tail(out), "```"]
    if gpus >= 2:
        many = work / "benchN.json"
        n = min(gpus, 8)
        code, out, _ = run([PY, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master-port=29619",
                            "bench/gpu_bench.py", "--train-only", "--batch", str(256 * n), "--json", str(many)], timeout=180)
        if code == 0 and ok:
            m = json.loads(many.read_text())
            lines += ["", f"DDP on {n} GPUs, {m['per_process_batch']} images per GPU (global batch {m['global_batch']}), "
                      "ASLoss over the gathered global batch:", "", "| objective | images/s | scaling efficiency |",
                      "|---|---|---|"]
            for k, v in m["train_images_per_s"].items():
                lines.append(f"| {k} | {v:,} | {v / (n * r['train_images_per_s'][k]):.0%} |")
        else:
            ok = False
            lines += ["", f"DDP throughput on {n} GPUs failed:", "```", tail(out), "```"]
    return ok, lines + [""]


def streaming_row(work: Path) -> tuple[bool, list[str]]:
    out_json = work / "streaming.json"
    code, out, _ = run([PY, "bench/gpu_bench.py", "--streaming-only", "--json", str(out_json)], timeout=300)
    lines = ["## 5. Streaming extraction: ResNet-50, 224 px, bf16, from a JPEG folder (bench/gpu_bench.py --streaming-only)", ""]
    if code != 0:
        return False, lines + ["```", tail(out), "```", ""]
    r = json.loads(out_json.read_text())["streaming"]
    lines += [f"{r['images']:,} generated JPEGs decoded and resized per sample by {r['workers']} DataLoader workers, "
              f"batch {r['batch']}: **{r['streamed_images_per_s']:,} images/s** streamed, against "
              f"{r['bare_forward_images_per_s']:,} images/s for the bare forward pass on a batch already on the GPU "
              f"(ratio {r['ratio']}).", ""]
    return True, lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "GPU_CHECK.md")
    p.add_argument("--skip-cuml", action="store_true")
    args = p.parse_args()
    gpus = gpu_count()
    if gpus == 0:
        print("gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False). This check exercises the "
              "CUDA paths and needs a GPU machine; on the CPU run `make test` (the CUDA tests skip there).", file=sys.stderr)
        return 2
    import torch

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus))
    head = ["# GPU check", "", f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `bench/gpu_check.sh` "
            f"on {gpus} GPU(s): {names}; torch {torch.__version__} (CUDA {torch.version.cuda}), Python "
            f"{platform.python_version()}, {os.cpu_count()} CPU cores.", ""]
    results, body = {}, []
    steps = [("CUDA tests", lambda: cuda_tests(work)), ("DDP smoke", lambda: ddp_smoke(work, gpus)),
             ("throughput", lambda: throughput(work, gpus)), ("streaming", lambda: streaming_row(work))]
    try:
        import importlib.util

        has_cuml = importlib.util.find_spec("cuml") is not None
    except Exception:  # noqa: BLE001
        has_cuml = False
    if has_cuml and not args.skip_cuml:
        steps.insert(2, ("cuML", lambda: cuml_scaling(work)))
    for name, step in steps:
        print(f"gpu_check: {name} ...", flush=True)
        try:
            ok, lines = step()
        except Exception as exc:  # noqa: BLE001 - one broken step must not hide the others' results
            ok, lines = False, [f"## {name}: crashed", "", "```", repr(exc), "```", ""]
        results[name] = ok
        body += lines
        print(f"gpu_check: {name} {'ok' if ok else 'FAILED'}", flush=True)
    if not has_cuml:
        body += ["## 3. cuML projections: not run (cuML is not installed; gpu_check.sh installs it unless "
                 "GPU_CHECK_CUML=0, and an install that fails is reported above the report)", ""]
    summary = ["| check | result |", "|---|---|"] + [f"| {k} | {'passed' if v else '**FAILED**'} |" for k, v in results.items()]
    total = time.perf_counter() - started
    report = head + summary + ["", f"Checks took {total:.0f} s (after the install).", ""] + body
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(report))
    print(f"gpu_check: report written to {args.report}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
