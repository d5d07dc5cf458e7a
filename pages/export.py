"""Export: download a trained model (safetensors + config), a snippet to run it, and its model card."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import study_cache
from app.nav import page_path
from app.widgets.errors import user_errors
from app.widgets.reliability import flag_warning, trial_choices
from app.widgets.trial_table import headline_metrics, shown_count, shown_value
from core.contract import Task
from core.deploy import model_card as cards
from core.metrics.catalogue import label


def pick_trial(complete: pd.DataFrame) -> pd.Series:
    labels = trial_choices(complete)
    number = st.selectbox(
        "Trial",
        list(labels),
        format_func=labels.__getitem__,
        key="export.trial",
        help="The best trial is chosen by default (validation only; test metrics are never used to choose).",
    )
    return complete[complete["number"] == number].iloc[0]


def trial_cards(row: pd.Series, task: Task) -> None:
    first = headline_metrics(task)[0]
    cards = st.columns(4)
    cards[0].metric(label(f"val_{first}").replace("Validation", "Val"), shown_value(row[f"val_{first}"]), border=True)
    cards[1].metric(label(f"test_{first}"), shown_value(row[f"test_{first}"]), border=True)
    cards[2].metric("Parameters", shown_count(row["n_params"]), border=True)
    cards[3].metric("Size (MB)", shown_value(row["weights_mb"], ".2f"), border=True)


def downloads(name: str, number: int, bundle: str, card: str) -> None:
    # The zip is built only when clicked, where an error could not be shown: check the files first.
    problem = study_cache.bundle_problem(name, number)
    buttons = st.columns(2)
    if problem:
        buttons[0].error(problem, icon=":material/error:")
    else:
        buttons[0].download_button(
            "Download model bundle (.zip)",
            lambda: study_cache.bundle_zip(name, number),
            file_name=f"{bundle}.zip",
            mime="application/zip",
            type="primary",
            icon=":material/deployed_code_history:",
            width="stretch",
            key="export.bundle",
            help="One folder: the weights (model.safetensors, segtune.json; config.json for smp architectures), "
            "model.onnx with predict.py, and MODEL_CARD.md. Exporting to ONNX and checking it takes a few seconds.",
        )
    buttons[1].download_button(
        "Download model card (.md)",
        card,
        file_name=f"{bundle}-{cards.MODEL_CARD_FILE}",
        mime="text/markdown",
        icon=":material/description:",
        width="stretch",
        key="export.card",
    )


def usage(bundle: str, smp_model: bool, task: Task) -> None:
    st.subheader("Run it")
    if task == Task.CLASSIFICATION:
        st.caption(
            f"Unzip `{bundle}.zip`, go into the folder `{bundle}/` and, with SegTune installed, classify a folder of "
            "images (a CSV of labels and probabilities):"
        )
        st.code(cards.segtune_command(task), language="bash")
        st.caption("or from Python, with the same preprocessing as training:")
        st.code(cards.classifier_snippet(), language="python")
        return
    st.caption(
        f"Unzip `{bundle}.zip` and go into the folder `{bundle}/`. Segment a folder of images there "
        "(PNG masks; numpy, Pillow and onnxruntime are all it needs, no SegTune):"
    )
    st.code(cards.predict_command(), language="bash")
    st.caption("or one image from Python, with the same preprocessing as training (predict.py's):")
    st.code(cards.onnx_snippet(), language="python")
    if smp_model:
        st.caption(
            "or with segmentation-models-pytorch: `config.json` + `model.safetensors` are a standard smp folder:"
        )
        st.code(cards.smp_snippet(), language="python")
    st.caption(f"With SegTune installed: `{cards.segtune_command()}` (also NIfTI / DICOM volumes with `--volumes`).")


def export_view(name: str) -> None:
    frame = study_cache.trials_frame(name)
    complete = frame[frame["state"] == "complete"].sort_values(["rank", "number"])
    if complete.empty:
        st.info(
            "No finished trials yet — a model can be exported once a trial completes. Follow the study on **Jobs**.",
            icon=":material/hourglass_empty:",
        )
        return
    row = pick_trial(complete)
    number = int(row["number"])
    bundle = f"{name}-trial{number}"
    task = study_cache.task(name)
    flag_warning(row, "exported", task)
    trial_cards(row, task)
    card = study_cache.model_card(name, number)
    downloads(name, number, bundle, card)
    st.page_link(
        page_path("compress.py"),
        label="Quantize, prune or export to ONNX / TorchScript on Compress & deploy",
        icon=":material/compress:",
    )
    usage(bundle, cards.smp_loadable(study_cache.trials(name, (number,))[0]), task)
    st.subheader("Model card")
    with st.container(border=True):
        st.markdown(card)


st.title("Export")
st.caption(
    "Download a trained model as a bundle — weights, ONNX, a prediction script and a model card — and run it anywhere: "
    "onnxruntime or segmentation-models-pytorch is enough."
)
study = study_cache.require_study()
with user_errors("Preparing the export"):
    export_view(study)
