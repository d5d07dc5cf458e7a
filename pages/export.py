"""Export: download a trained model (safetensors + config), a snippet to run it, and its model card."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.reliability import flag_warning, row_flags
from app.widgets.trial_table import headline_metrics, shown_value
from core.contract import Task
from core.deploy import model_card as cards
from core.metrics.catalogue import label

RUNS = {  # per task: what the command does with a folder of images, and what it writes
    Task.SEGMENTATION: "segment a folder of images from a shell (masks are written as PNGs)",
    Task.CLASSIFICATION: "classify a folder of images from a shell (one CSV row per image: its label and class probabilities)",
}


def pick_trial(complete: pd.DataFrame) -> pd.Series:
    labels = {int(row.number): f"#{row.number} · rank {row.rank}{' · ★ best' if row.best else ''}{' · ⚑ flagged' if row_flags(row) else ''}"
              for row in complete.itertuples()}
    number = st.selectbox("Trial", list(labels), format_func=labels.__getitem__, key="export.trial",
                          help="The best trial is chosen by default (validation only; test metrics are never used to choose).")
    return complete[complete["number"] == number].iloc[0]


def trial_cards(row: pd.Series, task: Task) -> None:
    first = headline_metrics(task)[0]
    cards = st.columns(4)
    cards[0].metric(label(f"val_{first}").replace("Validation", "Val"), shown_value(row[f"val_{first}"]), border=True)
    cards[1].metric(label(f"test_{first}"), shown_value(row[f"test_{first}"]), border=True)
    cards[2].metric("Parameters", shown_value(row["n_params"], ",.0f"), border=True)
    cards[3].metric("Size (MB)", shown_value(row["weights_mb"], ".2f"), border=True)


def downloads(name: str, number: int, bundle: str, card: str) -> None:
    # The zip is built only when clicked, where an error could not be shown: check the files first.
    problem = study_cache.bundle_problem(name, number)
    buttons = st.columns(2)
    if problem:
        buttons[0].error(problem, icon=":material/error:")
    else:
        buttons[0].download_button(
            "Download model bundle (.zip)", lambda: study_cache.bundle_zip(name, number), file_name=f"{bundle}.zip",
            mime="application/zip", type="primary", icon=":material/deployed_code_history:", width="stretch", key="export.bundle",
            help="model.safetensors + config.json + MODEL_CARD.md in one folder",
        )
    buttons[1].download_button("Download model card (.md)", card, file_name=f"{bundle}-{cards.MODEL_CARD_FILE}",
                               mime="text/markdown", icon=":material/description:", width="stretch", key="export.card")


def usage(bundle: str, task: Task) -> None:
    st.subheader("Run it")
    st.caption(f"Unzip `{bundle}.zip`, then {RUNS[task]}:")
    st.code(cards.predict_command(bundle, task), language="bash")
    st.caption("or from Python, with the same preprocessing as training:")
    st.code(cards.inference_snippet(bundle, task), language="python")


def export_view(name: str) -> None:
    frame = study_cache.trials_frame(name)
    complete = frame[frame["state"] == "complete"].sort_values(["rank", "number"])
    if complete.empty:
        st.info("No finished trials yet — a model can be exported once a trial completes. Follow the study on **Jobs**.",
                icon=":material/hourglass_empty:")
        return
    row = pick_trial(complete)
    number = int(row["number"])
    bundle = f"{name}-trial{number}"
    task = study_cache.task(name)
    flag_warning(row, "exported", task)
    trial_cards(row, task)
    card = study_cache.model_card(name, number)
    downloads(name, number, bundle, card)
    st.page_link(page_path("compress.py"), label="Quantize, prune or export to ONNX / TorchScript on Compress & deploy", icon=":material/compress:")
    usage(bundle, task)
    st.subheader("Model card")
    with st.container(border=True):
        st.markdown(card)


st.title("Export")
st.caption("Download a trained model as a bundle — weights, config and model card — and run it anywhere SegTune's core is installed.")
study = study_cache.require_study()
with user_errors("Preparing the export"):
    export_view(study)
