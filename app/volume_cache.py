"""Cached whole-volume masks for Compare masks (over ``core.results.volume_masks``), and pages of a
2D study's validation and test images with their masks (over ``core.results.split_masks``).

A trial's weights and a volume's slices never change once stored, so (study, trial) names a model
for good and (study, trial, volume) its predicted masks: each model is rebuilt once and each volume
predicted once per trial, while they stay in the caches (bounded: a volume's masks are slices x
size² bytes, 13 MB for 200 slices at 256 px, its images that times the channels). torch is imported
on first use only: the other result pages never need it. Pages of 2D images are cached the same
way: (study, part, page) names a page's images, (study, trial, part, page) its predicted masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from app import cache, study_cache
from core.errors import SegTuneError

if TYPE_CHECKING:
    from core.results.split_masks import ImagePage
    from core.results.volume_masks import VolumeSlices

MODELS_KEPT = 4  # rebuilt trial models held in memory (Compare shows up to 4 trials)
MASKS_KEPT = 32  # trial x volume predictions held (4 trials x 8 volumes)
VOLUMES_KEPT = 4  # decoded volumes held
PAGES_KEPT = 16  # decoded pages of 2D images held (a page: 8 images)


def split_volumes(name: str) -> dict[str, list[str]]:
    """Split part -> volume ids of the study's validation and test splits; {} for 2D datasets, and when
    the dataset cannot be read (deleted since): the stored previews still show then."""
    return _split_volumes(cache.settings().db_url, name)


@st.cache_data(ttl=study_cache.IDLE_TTL_S, max_entries=16, show_spinner=False)
def _split_volumes(db_url: str, name: str) -> dict[str, list[str]]:
    from core.results.volume_masks import split_volumes as volumes_of_split

    try:
        return volumes_of_split(study_cache.study(name), cache.settings())
    except SegTuneError:
        return {}


def volume_slices(name: str, part: str, volume: str) -> VolumeSlices:
    return _volume_slices(cache.settings().db_url, name, part, volume)


@st.cache_data(max_entries=VOLUMES_KEPT, show_spinner="Reading the volume's slices…")
def _volume_slices(db_url: str, name: str, part: str, volume: str) -> VolumeSlices:
    from core.results.volume_masks import volume_slices as read_slices

    return read_slices(study_cache.study(name), cache.settings(), part, volume)


def predictions(name: str, number: int, part: str, volume: str) -> np.ndarray:
    """Trial ``number``'s masks (N, S, S) for every stored slice of ``volume``, in slice order."""
    return _predictions(cache.settings().db_url, name, number, part, volume)


@st.cache_data(max_entries=MASKS_KEPT, show_spinner="Predicting the volume's slices…")
def _predictions(db_url: str, name: str, number: int, part: str, volume: str) -> np.ndarray:
    from core.results.volume_masks import predict_slices

    model, config = _model(db_url, name, number)
    return predict_slices(model, config, volume_slices(name, part, volume).images)


@st.cache_resource(max_entries=MODELS_KEPT, show_spinner="Loading the trial's weights…")
def _model(db_url: str, name: str, number: int) -> tuple[Any, Any]:
    from core.results.volume_masks import trial_model

    return trial_model(study_cache.study(name), number, cache.artifact_store())


def split_images(name: str) -> dict[str, list[str]]:
    """Split part -> image stems of a 2D study's validation and test splits; {} when the dataset
    cannot be read (deleted since): the stored previews still show then."""
    return _split_images(cache.settings().db_url, name)


@st.cache_data(ttl=study_cache.IDLE_TTL_S, max_entries=16, show_spinner=False)
def _split_images(db_url: str, name: str) -> dict[str, list[str]]:
    from core.results.split_masks import split_images as images_of_split

    try:
        return images_of_split(study_cache.study(name), cache.settings())
    except SegTuneError:
        return {}


def image_page(name: str, part: str, page: int) -> ImagePage:
    return _image_page(cache.settings().db_url, name, part, page)


@st.cache_data(max_entries=PAGES_KEPT, show_spinner="Reading the images…")
def _image_page(db_url: str, name: str, part: str, page: int) -> ImagePage:
    from core.results.split_masks import image_page as read_page

    return read_page(study_cache.study(name), cache.settings(), part, page)


def page_predictions(name: str, number: int, part: str, page: int) -> np.ndarray:
    """Trial ``number``'s masks (N, S, S) for the images of one page, in their order."""
    return _page_predictions(cache.settings().db_url, name, number, part, page)


@st.cache_data(max_entries=MASKS_KEPT * 2, show_spinner="Predicting the images…")
def _page_predictions(db_url: str, name: str, number: int, part: str, page: int) -> np.ndarray:
    from core.results.volume_masks import predict_slices

    model, config = _model(db_url, name, number)
    return predict_slices(model, config, image_page(name, part, page).images)
