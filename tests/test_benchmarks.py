"""Smoke tests of the benchmark harness (benchmarks/): tiny sizes on CPU, outputs written and parseable.

The harness is loaded by file path, as the ``torchinit bench`` CLI loads it (``benchmarks/`` is not
part of the installed package).
"""

import importlib.util
import json
import os
import sys
import types

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    path = os.path.join(ROOT, "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_run = _load("run")  # puts the repository root on sys.path, so benchmarks.* import below
from benchmarks import cases, init_speed, report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--sizes", "16,4096", "--dtypes", "float32", "--samples", "3", "--target-ms", "0.2",
         "--copy-bytes", "1MB", "--threads", "1", "--no-init", "--no-progress", "--name", "smoke"]


def _run(tmp_path, *extra):
    rc = bench_run.run(list(extra) + SMALL + ["--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "smoke.json", encoding="utf-8") as fh:
        return json.load(fh)


def test_harness_writes_json_markdown_and_plots(tmp_path):
    ops = ["gelu", "glu", "prelu"]
    data = _run(tmp_path, "--ops", ",".join(ops), "--no-compile")
    assert data["kind"] == "torchinit-benchmark"
    env = data["env"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    assert env["copy"]["gbps"] > 0 and env["copy_end"]["gbps"] > 0
    rows = data["results"]
    assert not [r for r in rows + data["overhead"] if "error" in r]
    seen = {(r["op"], r["numel"], r["pass"], r["impl"]) for r in rows}
    assert seen == {(op, n, p, i) for op in ops for n in (16, 4096) for p in ("fwd", "bwd", "fwdbwd")
                    for i in ("torchinit", "eager")}
    for r in rows:
        t = r["time_s"]
        assert 0 < t["p25"] <= t["median"] <= t["p75"]
        assert r["gbps"] == pytest.approx(r["bytes"] / t["median"] / 1e9)
        assert r["peak_bytes"] is None  # no CPU peak counter: reported as unknown, not guessed
        assert r["rel_err_vs_eager"] < 1e-5  # the torch path computes what torch computes
    # byte model: element-wise forward moves 2N, backward 3N; glu's output is half its input
    fwd = {r["op"]: r["bytes"] for r in rows if r["numel"] == 4096 and r["pass"] == "fwd" and r["impl"] == "eager"}
    assert fwd["gelu"] == 2 * 4096 * 4 and fwd["glu"] == 1.5 * 4096 * 4
    assert {(r["op"], r["pass"]) for r in data["overhead"]} == {(op, p) for op in ops for p in ("fwd", "fwdbwd")}

    md = (tmp_path / "smoke.md").read_text(encoding="utf-8")
    assert "## Per-call overhead" in md and "## Largest size" in md and "torchinit/eager" in md
    assert all(f"| {op} |" in md for op in ops)
    snippet = (tmp_path / "smoke-readme.md").read_text(encoding="utf-8")
    assert "| gelu | float32 | 16 KiB |" in snippet
    pngs = sorted(os.listdir(tmp_path / "smoke"))
    assert pngs == sorted(f"{op}-float32.png" for op in ops)
    for name in pngs:
        with open(tmp_path / "smoke" / name, "rb") as fh:
            assert fh.read(8) == PNG_MAGIC

    # report.py regenerates the same Markdown from the JSON alone
    out2 = tmp_path / "again"
    assert report.main([str(tmp_path / "smoke.json"), "--out", str(out2), "--no-plots"]) == 0
    again = (out2 / "smoke.md").read_text(encoding="utf-8")
    assert again.split("\n", 3)[3] == md.split("\n", 3)[3]  # same but for the source line


@pytest.mark.slow
def test_compile_baseline_is_timed_side_by_side(tmp_path):
    # relu: Inductor donates its saved buffer to the backward unless told not to; the backward-only
    # pass (one retained graph) must still run
    data = _run(tmp_path, "--ops", "relu", "--impls", "torchinit,eager,compile", "--overhead-numel", "0",
                "--no-plots", "--clock", "thread")
    impls = {(r["numel"], r["pass"], r["impl"]) for r in data["results"] if "error" not in r}
    assert impls == {(n, p, i) for n in (16, 4096) for p in ("fwd", "bwd", "fwdbwd")
                     for i in ("torchinit", "eager", "compile")}
    assert torch._functorch.config.donated_buffer  # the run's setting is restored
    assert data["config"]["timer"].startswith("time.thread_time")
    entry = [e for e in report.ratios(data) if e["numel"] == 4096 and e["pass"] == "fwdbwd"][0]
    assert entry["ti_vs_compile"] == pytest.approx(entry["times"]["torchinit"] / entry["times"]["compile"])


def test_discovery_covers_functional_and_optional_modules(monkeypatch):
    found = cases.discover()
    import torchinit.functional as tf

    names = {c.name for c in found.cases}
    assert set(tf.__all__) <= names | {s["op"] for s in found.skipped}
    assert "gelu[tanh]" in names and found.modules["torchinit.functional"] == "searched"

    fake = types.ModuleType("_fake_fused")
    fake.swiglu = lambda gate, up: torch.nn.functional.silu(gate) * up
    fake.mystery = lambda x: x
    fake.__all__ = ["swiglu", "mystery"]
    monkeypatch.setitem(sys.modules, "_fake_fused", fake)
    found = cases.discover(modules=["_fake_fused", "_absent_module_xyz"])
    assert [c.name for c in found.cases] == ["swiglu"]
    assert [s["op"] for s in found.skipped] == ["mystery"] and "COMPOSITES" in found.skipped[0]["reason"]
    assert found.modules == {"_fake_fused": "searched", "_absent_module_xyz": "absent"}
    swiglu = found.cases[0]
    assert swiglu.traffic.bytes(100, 2) == {"fwd": 600, "bwd": 1000, "fwdbwd": 1600}
    with pytest.raises(ValueError, match="unknown op"):
        cases.discover(["no_such_op"])


def test_bad_arguments_are_refused(capsys):
    assert bench_run.run(["--sizes", "12XB", "--no-progress"]) == 2
    assert "12XB" in capsys.readouterr().err
    assert bench_run.run(["--dtypes", "int8"]) == 2
    assert bench_run.run(["--ops", "nope"]) == 2
    assert bench_run.run(["--clock", "thread", "--device", "cpu", "--threads", "2"]) == 2  # it needs --threads 1
    assert "--threads 1" in capsys.readouterr().err
    assert bench_run.parse_size("1MB", torch.bfloat16) == 2**19
    assert bench_run.parse_size("16", torch.float32) == 16


def test_init_speed_loop_and_skip(monkeypatch):
    model = init_speed.transformer_stack(1, 8, 16)
    init_speed.torch_init_loop(model, "trunc_normal", torch.Generator().manual_seed(0))
    assert model.blocks[0].fc1.weight.abs().max() <= 0.04 and model.blocks[0].fc1.bias.abs().sum() == 0
    assert torch.equal(model.ln_f.weight, torch.ones(8))
    monkeypatch.setitem(sys.modules, "torchinit.init", None)  # import fails, as before apply_init existed
    out = init_speed.run_init_speed(torch.device("cpu"))
    assert "not importable" in out["skipped"]


def test_cuda_timer_reads_every_do_bench_time(monkeypatch):
    triton_testing = pytest.importorskip("triton.testing")
    from benchmarks import timing

    monkeypatch.setattr(triton_testing, "do_bench", lambda fn, warmup, rep, return_mode: [3.0, 1.0, 2.0, 2.0, 5.0])
    stats = timing.cuda_time(lambda: None)
    assert stats.median == pytest.approx(2e-3) and stats.samples == 5
    assert stats.p25 == pytest.approx(2e-3) and stats.p75 == pytest.approx(3e-3)


def test_cpu_defaults_one_thread_current_directory_quartile_bars_and_flags(tmp_path, monkeypatch, capsys):
    from matplotlib.axes import Axes

    drawn = []
    real_errorbar = Axes.errorbar

    def recording_errorbar(self, x, y, yerr=None, **kwargs):
        drawn.append((self, list(x), list(y), yerr))
        return real_errorbar(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", recording_errorbar)
    monkeypatch.chdir(tmp_path)
    argv = [a for a in SMALL if a not in ("--threads", "1")]  # no --threads, no --out: the defaults
    assert bench_run.run(["--ops", "relu", "--no-compile", "--passes", "fwd"] + argv) == 0
    out_dir = tmp_path / "torchinit-bench"  # the current directory, not the source tree
    data = json.loads((out_dir / "smoke.json").read_text(encoding="utf-8"))
    assert data["env"]["torch_threads"] == 1  # CPU default: one thread
    assert "warning: timing on" not in capsys.readouterr().err

    # the plot's time panel: medians in µs with the recorded quartiles as the error bars
    rows = sorted((r for r in data["results"] if r["impl"] == "eager"), key=lambda r: r["numel"])
    ax, xs, ys, yerr = next(d for d in drawn if "µs" in d[0].get_ylabel() and d[0].get_title().startswith("relu"))
    eager = next(d for d in drawn if d[0] is ax and d[2] == pytest.approx([r["time_s"]["median"] * 1e6 for r in rows]))
    low, high = eager[3]
    assert low == pytest.approx([(r["time_s"]["median"] - r["time_s"]["p25"]) * 1e6 for r in rows])
    assert high == pytest.approx([(r["time_s"]["p75"] - r["time_s"]["median"]) * 1e6 for r in rows])

    # a figure above the copy bandwidth is flagged wherever it is shown
    data["results"][0]["frac_copy"] = 1.2
    data["results"][0]["impl"] = "torchinit"
    md = report.markdown(data, "x.json")
    assert "120%*" in md and report.IMPOSSIBLE_NOTE in md
    assert report.fmt_frac_copy(0.5) == "50%" and report.fmt_frac_copy(1.01) == "101%*"
    assert report.impossible_rows(data) == [data["results"][0]]
    assert report.IMPOSSIBLE_NOTE not in report.readme_snippet({**data, "results": []}, "x.json")


def test_readme_performance_table_is_generated_from_the_json_it_names():
    import re

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    source = re.search(r"Generated by `python -m benchmarks.report (\S+) --print-readme`", readme).group(1)
    snippet = report.readme_snippet(report.load(os.path.join(ROOT, source)), source)
    table_and_note = snippet[snippet.index("| op | dtype |"):].strip()
    assert table_and_note in readme  # figures above the copy bandwidth carry their mark and the note


def test_several_cpu_threads_are_warned_about(tmp_path, capsys):
    assert bench_run.run(["--ops", "relu", "--no-compile", "--passes", "fwd", "--no-plots", "--overhead-numel", "0"]
                         + [a for a in SMALL if a not in ("--threads", "1")] + ["--threads", "2", "--out",
                                                                                 str(tmp_path)]) == 0
    assert "warning: timing on 2 CPU threads" in capsys.readouterr().err
