"""Export: download a trained model (safetensors + config), a snippet to run it, and its model card."""

from __future__ import annotations

import streamlit as st

from app import study_cache
from app.widgets.errors import user_errors
from app.widgets.trial_table import shown_value
from core import results

st.title("Export")
st.caption("Download a trained model as a bundle — weights, config and model card — and run it anywhere SegTune's core is installed.")

name = study_cache.require_study()
with user_errors("Preparing the export"):
    frame = study_cache.trials_frame(name)
    complete = frame[frame["state"] == "complete"].sort_values(["rank", "number"])
    if complete.empty:
        st.info("No finished trials yet — a model can be exported once a trial completes. Follow the study on **Jobs**.",
                icon=":material/hourglass_empty:")
        st.stop()
    labels = {int(row.number): f"#{row.number} · rank {row.rank}{' · ★ best' if row.best else ''}" for row in complete.itertuples()}
    number = st.selectbox("Trial", list(labels), format_func=labels.__getitem__, key="export.trial",
                          help="The best trial is chosen by default (validation only; test metrics are never used to choose).")
    row = complete[complete["number"] == number].iloc[0]
    bundle = f"{name}-trial{number}"

    cards = st.columns(4)
    cards[0].metric("Val Dice", shown_value(row["val_dice"]), border=True)
    cards[1].metric("Test Dice", shown_value(row["test_dice"]), border=True)
    cards[2].metric("Parameters", shown_value(row["n_params"], ",.0f"), border=True)
    cards[3].metric("Size (MB)", shown_value(row["weights_mb"], ".2f"), border=True)

    card = study_cache.model_card(name, number)
    downloads = st.columns(2)
    downloads[0].download_button(
        "Download model bundle (.zip)", lambda: study_cache.bundle_zip(name, number), file_name=f"{bundle}.zip",
        mime="application/zip", type="primary", icon=":material/deployed_code_history:", width="stretch", key="export.bundle",
        help="model.safetensors + config.json + MODEL_CARD.md in one folder",
    )
    downloads[1].download_button("Download model card (.md)", card, file_name=f"{bundle}-{results.MODEL_CARD_FILE}",
                                 mime="text/markdown", icon=":material/description:", width="stretch", key="export.card")

    st.subheader("Run it")
    st.caption(f"Unzip `{bundle}.zip` next to your script, then:")
    st.code(results.inference_snippet(bundle), language="python")

    st.subheader("Model card")
    with st.container(border=True):
        st.markdown(card)
