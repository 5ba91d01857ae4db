"""Every page runs under AppTest against a tiny library, driven by widget keys."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from asl_core.checkpoint import load_checkpoint
from ui import library
from ui import state as S

TIMEOUT = 120
ROOT = Path(__file__).resolve().parents[2]


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [w.value for w in at.warning] + [s.value for s in at.success] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def test_home_lists_library(app_env):
    at = run("app.py")  # the router; Home links to the other pages, so it runs through it
    assert at.title[0].value == "ASL Lens"
    assert "3 checkpoint(s)" in texts(at)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 3


def test_checkpoints_table_and_history(app_env):
    at = run("app_pages/01_Checkpoints.py")
    table = at.dataframe[0].value
    assert set(table["method"]) == {"baseline", "asloss", "clonal"}
    assert table["test accuracy"].notna().all()
    at.selectbox(key=S.CKPT_SELECT).set_value("asloss.safetensors").run()
    assert not at.exception
    assert at.subheader[0].value == "asloss"


def test_delete_asks_first(app_env, tmp_path, monkeypatch):
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "copy.safetensors").write_bytes((app_env / "baseline.safetensors").read_bytes())
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(folder))
    at = run("app_pages/01_Checkpoints.py")
    at.button(key=S.CKPT_DELETE).click().run()
    assert (folder / "copy.safetensors").exists()
    assert "Delete copy.safetensors from the library?" in texts(at)
    at.button(key=S.CKPT_DELETE_CANCEL).click().run()
    assert (folder / "copy.safetensors").exists()
    at.button(key=S.CKPT_DELETE).click().run()
    at.button(key=S.CKPT_DELETE_CONFIRM).click().run()
    assert not at.exception
    assert not (folder / "copy.safetensors").exists()
    assert "Deleted copy.safetensors." in texts(at)


# ---------------------------------------------------------------- upload logic (AppTest cannot upload files)


def test_upload_ours_never_overwrites(app_env, tmp_path):
    data = (app_env / "baseline.safetensors").read_bytes()
    first = library.import_upload(data, "baseline.safetensors", tmp_path, max_bytes=10 * 2**20)
    # other weights under a taken name get a suffix
    second = library.import_upload((app_env / "clonal.safetensors").read_bytes(), "baseline.safetensors", tmp_path,
                                   max_bytes=10 * 2**20)
    assert first.path.name == "baseline.safetensors" and not first.renamed
    assert second.path.name == "baseline-2.safetensors" and second.renamed and "saved as baseline-2" in second.message
    assert first.message.startswith("checkpoint validated")
    assert load_checkpoint(second.path).meta.content_hash == load_checkpoint(app_env / "clonal.safetensors").meta.content_hash
    # the same weights again, under any name, are reported (as information, not an error) and not added
    again = library.import_upload(data, "again.safetensors", tmp_path, max_bytes=10 * 2**20)
    assert again.level == "info" and "already holds these weights as baseline.safetensors" in again.message
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["baseline-2.safetensors", "baseline.safetensors"]


def _lightning_bytes(app_env) -> bytes:
    model = load_checkpoint(app_env / "baseline.safetensors").model
    buf = io.BytesIO()
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, buf)
    return buf.getvalue()


def test_upload_foreign_lightning(app_env, tmp_path):
    result = library.import_upload(_lightning_bytes(app_env), "../weights.ckpt", tmp_path, arch="digits_cnn",
                                   num_classes=10, dataset="digits-hard", max_bytes=10 * 2**20)
    meta = load_checkpoint(result.path).meta
    assert result.path == tmp_path / "weights.safetensors"  # "../" dropped
    assert meta.method == "foreign" and meta.dataset["name"] == "digits-hard"
    assert "foreign weights validated as digits_cnn" in result.message


def test_upload_ours_ignores_form_architecture(app_env, tmp_path):
    data = (app_env / "asloss.safetensors").read_bytes()
    result = library.import_upload(data, "x.safetensors", tmp_path, arch="resnet18", num_classes=3, dataset="digits",
                                   max_bytes=10 * 2**20)
    assert load_checkpoint(result.path).meta.method == "asloss"


def test_upload_wrong_architecture_names_keys(app_env, tmp_path):
    with pytest.raises(library.UserError, match="shape mismatch|missing keys"):
        library.import_upload(_lightning_bytes(app_env), "w.pt", tmp_path, arch="digits_cnn_small", num_classes=10,
                              dataset="digits-hard", max_bytes=10 * 2**20)
    with pytest.raises(library.UserError, match=r"fc.weight \(10, 64\) vs \(7, 64\)"):
        library.import_upload(_lightning_bytes(app_env), "w.pt", tmp_path, arch="digits_cnn", num_classes=7,
                              max_bytes=10 * 2**20)
    assert not list(tmp_path.glob("*.safetensors"))


def test_upload_refuses_pickled_code_and_size(app_env, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = pickle.dumps({"state_dict": Evil()})
    with pytest.raises(library.UserError, match="refused|not a readable"):
        library.import_upload(evil, "evil.pt", tmp_path, arch="digits_cnn", num_classes=10, max_bytes=2**20)
    with pytest.raises(library.UserError, match="upload limit"):
        library.import_upload(b"x" * 2048, "big.pt", tmp_path, arch="digits_cnn", max_bytes=1024)
    with pytest.raises(library.UserError, match="expected one of"):
        library.import_upload(b"x", "x.exe", tmp_path, max_bytes=1024)


# ---------------------------------------------------------------- Explore and Compare


def test_explore_runs_and_switches(app_env):
    at = run("app_pages/02_Explore.py")
    assert len(at.get("plotly_chart")) == 3  # scatter + confusion + per-class bars
    assert [m.label for m in at.metric][0].startswith("silhouette")
    per_class = at.dataframe[0].value
    assert list(per_class.columns[:4]) == ["class", "train n", "tail", "test n"]
    # digits-hard keeps round(60 * 10^(-k/9)) training images of class k: 0 is the largest, 7-9 the tail
    assert per_class["train n"].iloc[0] > per_class["train n"].iloc[9]
    assert list(per_class.loc[per_class["tail"] == "tail", "class"]) == ["7", "8", "9"]
    assert "model" not in at.query_params and "proj" not in at.query_params  # defaults stay out of the link
    at.selectbox(key=S.proj_key(S.EXP_PREFIX, "method")).set_value("tsne").run()
    assert at.query_params["proj"] == "tsne"
    assert at.subheader[0].value == "Selection: 0 sample(s)"
    for key, value in [(S.EXP_MODEL, "clonal.safetensors"), (S.EXP_LAYER, "block3"), (S.EXP_SPLIT, "val"),
                       (S.proj_key(S.EXP_PREFIX, "method"), "tsne"), (S.EXP_NORMALIZED, True)]:
        widget = at.toggle(key=key) if isinstance(value, bool) else at.selectbox(key=key)
        widget.set_value(value).run()
        assert not at.exception, (key, [e.message for e in at.exception])
    assert "Separability of `block3`" in [s.value for s in at.subheader]
    at.radio(key=S.EXP_COLOR).set_value("confidence").run()
    assert not at.exception


ALL_PANELS = "per_class,pairs,agreement,layers,moved,clusters,separability,flips,samples"


def compare_with(params: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages/03_Compare.py"), default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_compare_defaults_and_downloads(app_env):
    at = run("app_pages/03_Compare.py")
    assert at.multiselect(key=S.CMP_MODELS).value == ["baseline.safetensors", "asloss.safetensors", "clonal.safetensors"]
    heads = [s.value for s in at.subheader]
    assert {"Highlighted samples: none", "What changed against baseline", "Confusion matrices"} <= set(heads)
    # the first screen draws only the views and the confusion matrices; every panel waits to be opened
    assert len(at.get("plotly_chart")) == 3 + 3
    assert "asloss vs baseline" not in heads and "Per class" not in heads
    at.pills(key=S.CMP_PANELS).set_value(["flips", "separability"]).run()
    assert not at.exception
    assert at.query_params["panels"] == "flips,separability"
    assert len(at.get("plotly_chart")) == 3 + 3 + 2
    at.toggle(key=S.CMP_LAYER_BARS).set_value(True).run()
    assert len(at.get("plotly_chart")) == 3 + 3 + 2 + 1
    summary = at.dataframe[0].value
    assert list(summary["model"]) == ["baseline", "asloss", "clonal"]
    assert summary["McNemar p vs baseline"].str.startswith("p ").tolist() == [False, True, True]  # "p = 0.062", never 0.0000
    sep = next(d.value for d in at.dataframe if "samples used" in d.value.columns)
    assert {"silhouette ↑", "Davies-Bouldin ↓", "k-NN accuracy ↑"} <= set(sep.columns)  # Explore's names and arrows
    assert not at.exception and len(at.get("download_button")) == 4
    at.selectbox(key=S.CMP_LAYER).set_value("block2").run()
    assert not at.exception
    at.multiselect(key=S.CMP_MODELS).set_value(["clonal.safetensors", "baseline.safetensors"]).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2 + 2 + 1 + 1  # the bars toggle is still on


def test_compare_every_panel_opens_from_a_link(app_env):
    at = compare_with({"panels": ALL_PANELS, "b": "clonal"})
    heads = [s.value for s in at.subheader]
    for head in ("Per class", "Most confused pairs · baseline and clonal", "Agreement · baseline's prediction against clonal's",
                 "Where the representations diverge · baseline against clonal", "Samples across models",
                 "Regression clusters · groups of samples that got worse in clonal"):
        assert head in heads, head
    body = texts(at)
    assert "Estimator: exact" in body and "They agree on" in body and "median overlap" in body
    pairs = next(d.value for d in at.dataframe if "predicted as" in d.value.columns)
    assert (pairs["true"] != pairs["predicted as"]).all() and {"baseline rate", "clonal n", "change"} <= set(pairs.columns)


def test_a_panels_refused_link_value_is_said(app_env):
    """A panel's link parameter out of range (here the neighbours compared) is ignored with a warning,
    not silently (the panels run after the page has shown its own warnings)."""
    at = compare_with({"panels": "moved", "overlap_k": "999"})
    assert any("Ignored `overlap_k=999` from the link" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.slider(key=S.CMP_OVERLAP_K).value == 10


def test_compare_colours_by_regression_cluster_from_a_link(app_env):
    at = compare_with({"panels": "clusters", "clusters": "6", "color": "cluster", "b": "clonal"})
    assert at.radio(key=S.CMP_COLOR).value == "regression cluster"
    legend = next(m.value for m in at.markdown if "regression clusters (6, baseline → clonal" in m.value)
    table = next(d.value for d in at.dataframe if "main classes" in d.value.columns)
    worse = table[table["change"] < 0]
    # the worsened clusters (at most 8) are named in the legend, worst first; the rest are grey
    for _, row in worse.head(8).iterrows():
        assert f"cluster {row['cluster']}: {row['change']:+.2f} ({row['n']})" in legend
    assert ("the other clusters" if len(worse) else "none got worse") in legend


def test_compare_headline_and_per_class(app_env):
    at = compare_with({"panels": "per_class,flips"})
    body = texts(at)
    # one headline per compared model: verdict, intervals, flips, separability
    assert body.count("paired bootstrap intervals over the 100 samples") == 2
    assert "McNemar's exact test, p" in body and "Net samples of the class now right" in body
    assert "Separability of `embedding`" in body
    per_class = next(d.value for d in at.dataframe if "train n" in d.value.columns)
    assert {"baseline F1", "asloss F1", "Δ F1 asloss", "Δ F1 clonal"} <= set(per_class.columns)
    change = per_class["largest |Δ F1|"].tolist()
    assert change == sorted(change, reverse=True)  # the classes that changed most first
    at.radio(key=S.CMP_DELTA_METRIC).set_value("recall").run()
    per_class = next(d.value for d in at.dataframe if "train n" in d.value.columns)
    assert {"baseline recall", "Δ recall clonal"} <= set(per_class.columns) and "baseline F1" not in per_class.columns
    assert per_class["tail"].tolist().count("tail") == 3
    flips = next(d.value for d in at.dataframe if "net" in d.value.columns)
    assert list(flips.columns[:2]) == ["class", "net"]  # the useful column first, never cut off


def test_compare_sample_table_filters(app_env):
    at = compare_with({"panels": "samples"})
    samples = next(d.value for d in at.dataframe if "wrong in all" in d.value.columns)
    assert len(samples) == 100 and {"baseline pred", "clonal conf", "flipped", "overlap"} <= set(samples.columns)
    at.checkbox(key=S.CMP_F_FLIPPED).check().run()
    flipped = next(d.value for d in at.dataframe if "wrong in all" in d.value.columns)
    assert 0 < len(flipped) < 100 and flipped["flipped"].all()
    preds = flipped[["baseline pred", "asloss pred", "clonal pred"]].to_numpy() == flipped[["true"]].to_numpy()
    assert (preds.any(axis=1) & ~preds.all(axis=1)).all()
    at.checkbox(key=S.CMP_F_FLIPPED).uncheck().run()
    at.checkbox(key=S.CMP_F_WRONG_ALL).check().run()
    at.slider(key=S.CMP_F_CONFIDENCE).set_value((0.0, 0.5)).run()
    wrong = next(d.value for d in at.dataframe if "wrong in all" in d.value.columns)
    assert wrong["wrong in all"].all() and (wrong["baseline conf"] <= 0.5).all()
    at.slider(key=S.CMP_F_OVERLAP).set_value(0.2).run()
    low = next(d.value for d in at.dataframe if "wrong in all" in d.value.columns)
    assert (low["overlap"] <= 0.2).all()


def test_filters_keep_a_cell_highlight_and_say_so(app_env):
    """Issue 20, defect 4: ticking Flipped or Wrong in all cleared a confusion-cell highlight silently."""
    at = compare_with({"panels": "samples", "cell": "0-3-3"})
    title = next(s.value for s in at.subheader if s.value.startswith("Highlighted samples"))
    assert "with true 3, predicted 3 by baseline" in title
    at.checkbox(key=S.CMP_F_FLIPPED).check().run()
    assert next(s.value for s in at.subheader if s.value.startswith("Highlighted samples")) == title
    assert "the highlight above stays as it is" in texts(at)
    at.checkbox(key=S.CMP_F_WRONG_ALL).check().run()
    assert next(s.value for s in at.subheader if s.value.startswith("Highlighted samples")) == title


def test_table_callback_never_clears_another_source(monkeypatch):
    """The sample table's on_select fires with no rows when a filter changes the table: that must
    not take the highlight from a cell, a pair or a lasso."""
    from ui import compare

    state = {S.highlight_source_key(S.CMP_PREFIX): ("cell", 0), S.CMP_TABLE: {"selection": {"rows": []}}}
    monkeypatch.setattr(compare.st, "session_state", state)
    monkeypatch.setattr("ui.selection.st.session_state", state)
    monkeypatch.setattr("ui.views.st.session_state", state)
    compare._table_rows_clicked()
    assert state[S.highlight_source_key(S.CMP_PREFIX)] == ("cell", 0)
    state[S.CMP_TABLE] = {"selection": {"rows": [2]}}
    compare._table_rows_clicked()
    assert state[S.highlight_source_key(S.CMP_PREFIX)] == ("table", 0)
    state[S.CMP_TABLE] = {"selection": {"rows": []}}
    compare._table_rows_clicked()
    assert state[S.highlight_source_key(S.CMP_PREFIX)] is None


def test_large_selection_link_reopens_whole(app_env):
    """Issue 20, defect 3: a link kept 200 of 573 lassoed samples and said '200 chosen'."""
    at = compare_with({"panels": "samples"})
    table = next(d.value for d in at.dataframe if "wrong in all" in d.value.columns)
    ids = [int(v) for v in table["sample"]]
    assert len(ids) == 100
    from ui import views

    monkey = views.MAX_URL_IDS
    try:
        views.MAX_URL_IDS = 40  # the tiny library has 100 samples: make 100 "too many for a URL"
        at.checkbox(key=S.CMP_F_WRONG_ALL).check().run()
        at.button(key=S.CMP_HIGHLIGHT_ROWS).click().run()
        n = len(next(d.value for d in at.dataframe if "wrong in all" in d.value.columns))
        assert n > 40
        head = next(s.value for s in at.subheader if s.value.startswith("Highlighted samples"))
        assert head.startswith(f"Highlighted samples: {n} ")
        assert "hl" not in at.query_params and len(at.query_params["sel"]) == 16
        link = dict(at.query_params)
    finally:
        views.MAX_URL_IDS = monkey
    again = compare_with(link)
    assert next(s.value for s in again.subheader if s.value.startswith("Highlighted samples")).startswith(
        f"Highlighted samples: {n} ")
    gone = compare_with({"sel": "0123456789abcdef"})
    assert any("sel=0123456789abcdef" in w.value for w in gone.warning)
    bad = compare_with({"sel": "../../etc/passwd"})
    assert any("Ignored `sel=" in w.value for w in bad.warning)


def test_figures_download_needs_no_widget_state(app_env, monkeypatch):
    """Issue 20, defect 1: the "Figures HTML" file was built after the run, from a widget key that
    was gone by then (KeyError cmp_color): no file and no message. Build every deferred download
    outside the run, with an empty session state."""
    from streamlit.delta_generator import DeltaGenerator

    made = {}
    original = DeltaGenerator.download_button

    def spy(self, label, data, *args, **kwargs):
        made[label] = data
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    at = compare_with({"color": "flip"})
    assert set(made) == {"Coordinates CSV", "Coordinates Parquet", "Figures HTML", "Report HTML"}
    import ui.compare
    import ui.views

    monkeypatch.setattr(ui.compare.st, "session_state", {})
    monkeypatch.setattr(ui.views.st, "session_state", {})
    html = made["Figures HTML"]().decode()
    assert html.startswith("<!doctype html>") and ("right in both" in html or "wrong in both" in html)  # flip type, as drawn
    assert made["Report HTML"]()


def test_link_with_a_cell_outside_the_matrices_warns(app_env):
    """Issue 20, defect 9: ``cell=9-9-9`` was ignored without a word."""
    at = compare_with({"cell": "9-9-9"})
    assert any("Ignored `cell=9-9-9`" in w.value and "3 confusion matrices" in w.value for w in at.warning)
    assert any(s.value == "Highlighted samples: none" for s in at.subheader)


def test_compare_link_restores_view_and_neighbours(app_env):
    from asl_core.data import DatasetSpec, build_splits

    spec = DatasetSpec.from_dict(load_checkpoint(app_env / "baseline.safetensors").meta.dataset)
    sample = int(build_splits(spec).val.index[3])
    at = AppTest.from_file(str(ROOT / "app_pages/03_Compare.py"), default_timeout=TIMEOUT)
    at.query_params.update({"models": "clonal,baseline.safetensors,nonesuch", "split": "val", "layer": "block3",
                            "proj": "tsne", "perplexity": "7", "color": "prediction", "hl": str(sample)})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.multiselect(key=S.CMP_MODELS).value == ["clonal.safetensors", "baseline.safetensors"]
    assert any("'nonesuch'" in w.value for w in at.warning)
    assert at.selectbox(key=S.CMP_SPLIT).value == "val" and at.selectbox(key=S.CMP_LAYER).value == "block3"
    assert at.selectbox(key=S.proj_key(S.CMP_PREFIX, "method")).value == "tsne"
    assert at.slider(key=S.proj_key(S.CMP_PREFIX, "perplexity")).value == 7
    assert at.radio(key=S.CMP_COLOR).value == "prediction"
    heads = [s.value for s in at.subheader]
    assert "Highlighted samples: 1 chosen" in heads
    # one sample highlighted: its neighbours in both models, in words and images
    body = texts(at)
    assert "**clonal** predicts" in body and "**baseline** predicts" in body and "nearest neighbours in `block3`" in body
    # the URL now says everything the widgets say, and follows a change
    assert at.query_params["models"] == "clonal,baseline" and at.query_params["hl"] == str(sample)
    assert at.query_params["color"] == "pred" and at.query_params["perplexity"] == "7"
    at.selectbox(key=S.CMP_SPLIT).set_value("test").run()
    assert "split" not in at.query_params and at.query_params["layer"] == "block3"


def test_compare_link_with_bad_values_warns(app_env):
    at = AppTest.from_file(str(ROOT / "app_pages/03_Compare.py"), default_timeout=TIMEOUT)
    at.query_params.update({"models": "ghost", "perplexity": "900", "proj": "tsne", "hl": "x"})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    warnings = "\n".join(w.value for w in at.warning)
    assert "'ghost'" in warnings and "perplexity=900" in warnings and "hl=x" in warnings
    at.query_params["hl"] = "999999"
    at.run()
    assert "999999" in "\n".join(w.value for w in at.warning)
    assert at.multiselect(key=S.CMP_MODELS).value == ["baseline.safetensors", "asloss.safetensors", "clonal.safetensors"]


def test_compare_needs_two(app_env):
    at = run("app_pages/03_Compare.py")
    at.multiselect(key=S.CMP_MODELS).set_value(["baseline.safetensors"]).run()
    assert not at.exception
    assert "Pick 2 or 3 models." in texts(at)


def test_compare_refuses_different_datasets(app_env, tmp_path, monkeypatch):
    import dataclasses

    from asl_core.checkpoint import save_checkpoint
    from asl_core.data import get_spec

    folder = tmp_path / "mixed"
    folder.mkdir()
    base = load_checkpoint(app_env / "baseline.safetensors")
    other = dataclasses.replace(base.meta, dataset=get_spec("digits", val_per_class=5, test_per_class=10).to_dict())
    save_checkpoint(base.model, base.meta, folder / "baseline")
    save_checkpoint(base.model, other, folder / "asloss")
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(folder))
    at = run("app_pages/03_Compare.py")
    assert any("different data" in e.value for e in at.error)


def test_empty_library_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(tmp_path / "none"))
    for page in ("app.py", "app_pages/01_Checkpoints.py", "app_pages/02_Explore.py", "app_pages/03_Compare.py"):
        at = run(page)
        assert at.info, page


def _upload(at: AppTest, name: str, data: bytes, **form) -> AppTest:
    at.file_uploader(key=S.CKPT_UPLOAD).set_value((name, data, "application/octet-stream"))
    if "arch" in form:
        at.selectbox(key=S.CKPT_UPLOAD_ARCH).set_value(form["arch"])
    if "classes" in form:
        at.number_input(key=S.CKPT_UPLOAD_CLASSES).set_value(form["classes"])
    at.button(key=S.CKPT_UPLOAD_SUBMIT).click()
    return at.run()


def test_upload_form_messages(app_env, tmp_path, monkeypatch):
    folder = tmp_path / "lib"
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(folder))
    at = run("app_pages/01_Checkpoints.py")
    _upload(at, "w.ckpt", _lightning_bytes(app_env), arch="digits_cnn", classes=7)
    assert not at.exception
    assert any("fc.weight (10, 64) vs (7, 64)" in e.value for e in at.error), [e.value for e in at.error]
    assert not list(folder.glob("*.safetensors"))
    _upload(at, "../../baseline.safetensors", (app_env / "baseline.safetensors").read_bytes())
    assert not at.exception
    assert "added baseline.safetensors to the library" in texts(at)
    assert (folder / "baseline.safetensors").exists()


def test_download_payloads(app_env, tmp_path):
    import pandas as pd

    from asl_core.engine.analysis import compare
    from asl_core.engine.cache import DiskCache
    from ui import downloads

    ckpts = [load_checkpoint(app_env / f"{n}.safetensors") for n in ("baseline", "clonal")]
    cmp = compare(ckpts, cache=DiskCache(tmp_path / "cache"))
    table = pd.read_csv(io.BytesIO(downloads.coordinates_csv(cmp)))
    assert {"sample_index", "baseline_x", "clonal_y", "clonal_pred"} <= set(table.columns) and len(table) == 100
    assert len(pd.read_parquet(io.BytesIO(downloads.coordinates_parquet(cmp)))) == 100
    html = downloads.figures_html([], "t").decode()
    assert html.startswith("<!doctype html>")


def test_checkpoints_page_names_skipped_data_files(app_env, tmp_path, monkeypatch):
    """A checkpoint trained on a folder with unreadable files says so, naming them (issue 18)."""
    import dataclasses

    from asl_core.checkpoint import save_checkpoint

    folder = tmp_path / "lib"
    folder.mkdir()
    ck = load_checkpoint(app_env / "baseline.safetensors")
    note = "skipped 2 of 40 files that are not readable images: a/zero.png (zero bytes); b/x.jpg (not an image)"
    meta = dataclasses.replace(ck.meta, content_hash="", diagnostics={**ck.meta.diagnostics, "dataset_notes": [note]})
    save_checkpoint(ck.model, meta, folder / "baseline")
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(folder))
    at = run("app_pages/01_Checkpoints.py")
    assert any("a/zero.png (zero bytes)" in w.value for w in at.warning), texts(at)


def test_a_warmed_first_compare_extracts_and_projects_nothing(app_env, tmp_path, monkeypatch):
    """``asl-lens demo`` computes Compare's first view into the disk cache (``warm_first_visit``):
    a freshly started server then opens it without running a model or a projection. The same
    page on an empty cache does run them (so this test can fail)."""
    import asl_core.engine.cache as engine_cache
    from ui import analysis as ui_analysis
    from ui import compare as ui_compare

    cmp = ui_compare.warm_first_visit(app_env)
    assert [m.name for m in cmp.models] == ["baseline", "asloss", "clonal"]

    calls = []

    def computed(*args, **kwargs):
        calls.append(args)
        raise AssertionError("computed again")

    monkeypatch.setattr(engine_cache, "extract_features", computed)
    monkeypatch.setattr(engine_cache, "project_aligned", computed)
    ui_analysis._memory()[0].clear()  # a fresh server: nothing in memory
    at = run("app_pages/03_Compare.py")
    assert len(at.get("plotly_chart")) == 3 + 3 and not calls

    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "empty-cache"))
    ui_analysis._memory()[0].clear()
    at = AppTest.from_file(str(ROOT / "app_pages/03_Compare.py"), default_timeout=TIMEOUT)
    at.run()
    assert at.exception and calls


def test_find_classes_in_the_legend_from_a_link(app_env):
    """Issue 20: a search box in the legend. ``find=`` isolates every class whose name contains a
    term, in every view and in the legend; a term that matches nothing is said."""
    from ui.widgets import find_classes

    assert find_classes(["tabby cat", "Tiger cat", "dog", "catamaran"], " CAT, dog") == [0, 1, 2, 3]
    assert find_classes(["a", "b"], " , ") == []
    at = compare_with({"find": "3"})
    legend = next(m.value for m in at.markdown if "true class" in str(m.value) and "border-radius" in str(m.value))
    assert legend.count("#c8c8c8") == 9  # the other nine classes grey
    assert "1 class match" in texts(at)
    assert at.query_params.get("find") == ["3"] or at.query_params.get("find") == "3"
    at = compare_with({"find": "zebra"})
    assert "no class name contains 'zebra'" in texts(at)
